//! Checking a config: the file, then the overrides from the environment and flags, then every check, with
//! every problem reported in words an integrator can act on (where it is, what is wrong, what to write
//! instead). The generic part (layers, locating, serde-driven reading) is `bindwave_settings`'.

use std::path::{Path, PathBuf};

use bindwave_settings::{Origin, Override, Problem, Style};

use super::{effects, meaning, schema, AgentConfig, Identity};
use crate::AgentError;

/// The outcome of checking a config: the problems, or the config and the phone's identity.
#[derive(Debug)]
pub struct Check {
    pub path: PathBuf,
    /// Every problem found; empty when the config is valid.
    pub problems: Vec<Problem>,
    /// The overrides that were applied, in order.
    pub overrides: Vec<Override>,
    /// The effective config, when valid.
    pub config: Option<AgentConfig>,
    /// The phone's hardware level and its source, when valid.
    pub identity: Option<Identity>,
}

/// A config that passed every check, with the identity resolved (and the probe run) while checking it: what
/// the agent starts with.
#[derive(Debug, Clone)]
pub struct Checked {
    pub config: AgentConfig,
    pub identity: Identity,
}

/// Reads the config file, applies `overrides` (in order), and checks it: TOML syntax (with line and column),
/// unknown keys (with the nearest known key), types and ranges, the broker URL, the hardware level (part-number
/// table, fixed level or probe), the access protocol, the CA file, the hook commands. The error is for a file
/// that cannot be read; everything wrong with its content is in [`Check::problems`].
pub fn check(path: &Path, overrides: &[Override]) -> Result<Check, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::ConfigRead { path: path.into(), source })?;
    Ok(check_text(path, &text, overrides))
}

/// [`check`] on a config's text.
pub fn check_text(path: &Path, text: &str, overrides: &[Override]) -> Check {
    let schema = match schema() {
        Ok(s) => s,
        Err(e) => {
            let problem = Problem::general(Origin::File { line: None, column: None }, e.to_string(), Style::Nested);
            return Check {
                path: path.into(),
                problems: vec![problem],
                overrides: Vec::new(),
                config: None,
                identity: None,
            };
        }
    };
    let mut outcome = bindwave_settings::read::<AgentConfig>(&schema, Style::Nested, text, overrides);
    let mut identity = None;
    if let Some(config) = outcome.value.take() {
        let probe_usable = meaning::check(&config, &schema, &mut outcome);
        identity = effects::check(&config, probe_usable, &mut outcome);
        super::trust::check(&config, &mut outcome);
        outcome.value = Some(config);
    }
    outcome.sort();
    let valid = outcome.problems.is_empty();
    Check {
        path: path.into(),
        problems: outcome.problems,
        overrides: outcome.overrides,
        config: outcome.value.filter(|_| valid),
        identity: identity.filter(|_| valid),
    }
}

impl Check {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty() && self.config.is_some()
    }

    /// The config, or an error that lists every problem.
    pub fn into_config(self) -> Result<AgentConfig, AgentError> {
        self.into_checked().map(|c| c.config)
    }

    /// The config and the identity resolved while checking it, or an error that lists every problem.
    pub fn into_checked(self) -> Result<Checked, AgentError> {
        match (self.config, self.identity) {
            (Some(config), Some(identity)) if self.problems.is_empty() => Ok(Checked { config, identity }),
            _ => Err(AgentError::ConfigProblems { path: self.path, problems: self.problems }),
        }
    }
}

impl AgentConfig {
    /// Loads the config file as it is, with no overrides. See [`AgentConfig::load_with`].
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        Self::load_with(path, &[])
    }

    /// Loads the config file, applies `overrides` on top (in order: the last one wins), and checks everything
    /// [`check`] checks. Every problem found is in the error.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Self, AgentError> {
        check(path, overrides)?.into_config()
    }

    /// [`AgentConfig::load_with`], with the identity it resolved: the agent starts from this.
    pub fn load_checked(path: &Path, overrides: &[Override]) -> Result<Checked, AgentError> {
        check(path, overrides)?.into_checked()
    }
}
