//! What `bindwave-agent config check` prints: a summary of a valid config, or every problem; as text for people
//! or JSON for scripts.

use bindwave_proto::wire::LevelSource;
use bindwave_settings::{Override, Problem};
use serde::Serialize;

use super::{AgentConfig, Check, Identity};

impl Check {
    /// The report for people: a summary of a valid config, or every problem.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let path = self.path.display();
        match (&self.config, &self.identity) {
            (Some(config), Some(identity)) if self.problems.is_empty() => {
                let _ = writeln!(out, "agent config {path} is valid");
                let _ = writeln!(out, "device id       {}", config.device_id);
                let _ =
                    writeln!(out, "hardware level  {} ({})", identity.hardware_level, level_source(config, identity));
                let _ = writeln!(out, "broker          {}", config.broker.url);
                let _ = writeln!(out, "state dir       {}", config.state_dir.display());
                let _ = writeln!(out, "release keys    {}", release_keys(config));
                for (i, o) in self.overrides.iter().enumerate() {
                    let label = if i == 0 { "overrides" } else { "" };
                    let _ = writeln!(out, "{label:<16}{} = {} ({})", o.key, o.shown(), o.origin);
                }
            }
            _ => {
                let n = self.problems.len();
                let _ = writeln!(out, "agent config {path} is invalid: {n} problem{}", if n == 1 { "" } else { "s" });
                for p in &self.problems {
                    let _ = writeln!(out, "  {p}");
                }
            }
        }
        out
    }

    /// The report for scripts (`config check -o json`).
    pub fn report(&self) -> CheckReport<'_> {
        let valid = self.config.as_ref().zip(self.identity.as_ref()).filter(|_| self.is_valid());
        CheckReport {
            config: self.path.display().to_string(),
            valid: valid.is_some(),
            device_id: valid.map(|(c, _)| c.device_id.as_str()),
            hardware_level: valid.map(|(_, i)| i.hardware_level.0),
            hardware_level_source: valid.map(|(_, i)| i.source.as_str()),
            broker: valid.map(|(c, _)| c.broker.url.as_str()),
            state_dir: valid.map(|(c, _)| c.state_dir.display().to_string()),
            problems: &self.problems,
            overrides: self.overrides.iter().map(Override::masked).collect(),
            effective: valid.map(|(c, _)| c.effective(false)),
        }
    }
}

/// `config check -o json`: whether the config is valid, its problems, the overrides applied, and for a valid
/// config a summary and the effective config (passwords hidden).
#[derive(Debug, Serialize)]
pub struct CheckReport<'a> {
    pub config: String,
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_level: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_level_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    pub problems: &'a [Problem],
    pub overrides: Vec<Override>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective: Option<AgentConfig>,
}

/// The release keys pinned, by key id, in words; a lab phone says so.
fn release_keys(config: &AgentConfig) -> String {
    let ids = config.trust.release().map(|t| t.keys().ids().map(|id| id.to_string()).collect::<Vec<_>>());
    let mut text = match ids {
        Ok(ids) if ids.is_empty() => "none".to_string(),
        Ok(ids) => ids.join(", "),
        Err(e) => e.to_string(),
    };
    if config.trust.insecure_lab {
        text.push_str(" (LAB MODE: insecure_lab = true, unsigned binds and plain MQTT are accepted)");
    }
    text
}

/// Where the hardware level came from, in words.
fn level_source(config: &AgentConfig, identity: &Identity) -> String {
    let mut text = match identity.source {
        LevelSource::PartNumber => format!("from the part number {} in [hardware_levels]", config.part_number),
        LevelSource::Configured => "from hardware_level".to_string(),
        LevelSource::Probe => "from [hardware_probe]".to_string(),
    };
    if let Some(c) = &identity.conflict {
        text.push_str(&format!("; the {} says {}: the probe wins", c.other_source.as_str().replace('_', " "), c.other));
    }
    text
}
