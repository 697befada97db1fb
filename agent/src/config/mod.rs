//! The agent's configuration: a TOML file, every key of which is in `agent/agent.example.toml` with an example
//! value and what it does.
//!
//! - [`settings`]: the structs, the one list of keys: the checker reads their serde derive.
//! - [`check`](mod@check): reading and checking a config, with every problem reported, each with where it is
//!   (line and column, variable or flag); the generic part is the `bindwave_settings` crate's.
//! - [`meaning`]: the checks serde's types cannot express (the broker URL, empty commands, the access
//!   protocol); pure.
//! - [`effects`]: the checks with side effects: the TLS trust from `ca_file`, and the phone's identity.
//! - [`probe`]: the identity itself, and the hardware probe, run once at start with a time limit.
//! - [`report`]: what `config check` prints.
//! - `trust`: `[trust]`, the keys the phone pins (release keys for binds, the controller's for commands).
//!
//! Every value can be set over the file, by an environment variable `BINDWAVE_AGENT__<SECTION>__<KEY>` (any
//! case) or a flag (`--set section.key=value`, `--broker`, `--device-id`, `--state-dir`): see [`Override`].
//! Flags win over the environment, the environment over the file. Durations (`*_secs`, `*_ms`) may also be
//! written in words: `"30s"`, `"6h"`, `"1h30m"`.

mod check;
mod effects;
mod meaning;
pub mod probe;
mod report;
mod settings;
mod trust;

pub use bindwave_settings::{list_problems, nearest, Origin, Override, Problem};
pub use check::{check, check_text, Check, Checked};
pub use probe::Identity;
pub use report::CheckReport;
pub use settings::{
    AccessSettings, AgentConfig, BrokerSettings, DownloadSettings, HealthSettings, InstallerSettings, ProbeSettings,
};
pub use trust::TrustSettings;

use bindwave_settings::{Schema, SettingsError};

/// The prefix of environment variables that override config values: `BINDWAVE_AGENT__DOWNLOAD__ATTEMPTS=3`.
pub const ENV_PREFIX: &str = "BINDWAVE_AGENT__";

/// The documented example config: every key, with an example value. Messages take their examples from it.
pub const EXAMPLE: &str = include_str!("../../agent.example.toml");

/// The config's keys, as [`AgentConfig`]'s serde derive names them, with the example's values.
pub fn schema() -> Result<Schema, SettingsError> {
    Schema::of::<AgentConfig>(EXAMPLE)
}

/// The agent's environment overrides.
pub trait FromEnv: Sized {
    /// The overrides in an environment: every `BINDWAVE_AGENT__<SECTION>__<KEY>` variable (any case; parts
    /// separated by two underscores), sorted by name. Values are read like `--set` values.
    fn from_env(vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> Vec<Self>;
}

impl FromEnv for Override {
    fn from_env(vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> Vec<Override> {
        Override::from_env_prefixed(ENV_PREFIX, vars)
    }
}

#[cfg(test)]
mod tests;
