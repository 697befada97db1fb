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
    // The broker's TLS files, read as the link reads them (with the process's crypto provider, which `main`
    // installs; without one there is nothing to check them with).
    let tls = config.broker.tls();
    if tls.ca_file.is_some() {
        match tls.client_config() {
            Ok(_) | Err(bindwave_link::LinkError::NoCryptoProvider) => {}
            Err(e) => {
                let key = match &e {
                    bindwave_link::LinkError::TlsFile { what: "client key", .. }
                    | bindwave_link::LinkError::TlsConfig { what: "client key", .. } => "client_key",
                    bindwave_link::LinkError::TlsFile { what: "client certificate", .. }
                    | bindwave_link::LinkError::NoCertificate { what: "client certificate", .. } => "client_cert",
                    _ => "ca_file",
                };
                out.problem(&["broker", key], format!("`{key}` in [broker]: {}", crate::error::chain(&e)));
            }
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
