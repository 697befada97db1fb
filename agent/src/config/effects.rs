//! The checks with side effects, apart from the pure ones: building the TLS trust from `[download] ca_file`
//! (it reads the file) and resolving the phone's identity (it runs the hardware probe, once: the result goes
//! to the agent with the config).

use bindwave_settings::Outcome;

use super::{AgentConfig, Identity};
use crate::AgentError;

/// Adds what is wrong to `out`; returns the identity if it resolves.
pub(super) fn check(config: &AgentConfig, probe_usable: bool, out: &mut Outcome<AgentConfig>) -> Option<Identity> {
    if let Some(ca) = &config.download.ca_file {
        if let Err(e) = crate::Transport::new(Some(ca)) {
            let detail = match &e {
                AgentError::HttpClient(d) => d.clone(),
                other => crate::error::chain(other),
            };
            out.problem(&["download", "ca_file"], format!("`ca_file` in [download]: {detail}"));
        }
    }
    if config.trust.inline_controller_keys().is_ok() {
        if let Err(e) = config.trust.controller_trust() {
            let detail = match &e {
                AgentError::ConfigInvalid(d) => d.clone(),
                other => crate::error::chain(other),
            };
            out.problem(&["trust", "controller_key_files"], detail);
        }
    }
    if !probe_usable {
        return None;
    }
    match config.identity() {
        Ok(identity) => Some(identity),
        Err(AgentError::ConfigInvalid(message)) => {
            out.problem(&["part_number"], message);
            None
        }
        Err(other) => {
            out.problem(&["hardware_probe"], other.to_string());
            None
        }
    }
}
