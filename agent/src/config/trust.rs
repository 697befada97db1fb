//! `[trust]`: the keys the phone pins. Release keys (`keys`, `key_files`) sign binds; the controller's command
//! keys (`controller_keys`, `controller_key_files`) sign commands. More than one of each may be pinned, so a
//! key can be rotated without stranding a phone: pin the new key beside the old one, switch the signer, then
//! drop the old key.

use std::path::PathBuf;

use bindwave_proto::{PublicKey, TrustedKeys};
use serde::{Deserialize, Serialize};

use crate::AgentError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustSettings {
    /// Release keys that sign binds: `ed25519:<hex>` or PEM.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Files holding release keys (PEM or `ed25519:<hex>`), e.g. `release.key.pub`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_files: Vec<PathBuf>,
    /// The controller's command keys: the public half of its `data_dir/controller.key`, as its start log
    /// prints it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub controller_keys: Vec<String>,
    /// Files holding the controller's command keys, e.g. a copy of its `data_dir/controller.key.pub`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub controller_key_files: Vec<PathBuf>,
    /// A lab, never a fleet: take commands that are unsigned or do not verify (never with their override).
    pub insecure_lab: bool,
}

impl TrustSettings {
    /// The controller keys written inline, each parsed; the error says which entry is wrong.
    pub fn inline_controller_keys(&self) -> Result<Vec<PublicKey>, String> {
        self.controller_keys
            .iter()
            .enumerate()
            .map(|(i, text)| {
                PublicKey::parse(text).map_err(|e| format!("`controller_keys` in [trust], entry {}: {e}", i + 1))
            })
            .collect()
    }

    /// Every pinned controller key, from the config and from the key files (read now).
    pub fn controller_trust(&self) -> Result<TrustedKeys, AgentError> {
        let mut keys = self.inline_controller_keys().map_err(AgentError::ConfigInvalid)?;
        for path in &self.controller_key_files {
            let text = std::fs::read_to_string(path).map_err(crate::error::io_err("read the controller key", path))?;
            let key = PublicKey::parse(&text).map_err(|e| {
                AgentError::ConfigInvalid(format!(
                    "`controller_key_files` in [trust]: {}: {e} (copy the controller's data_dir/controller.key.pub)",
                    path.display()
                ))
            })?;
            keys.push(key);
        }
        Ok(TrustedKeys::new(keys))
    }

    /// Whether any controller key is pinned, inline or by file.
    pub fn pins_a_controller_key(&self) -> bool {
        !self.controller_keys.is_empty() || !self.controller_key_files.is_empty()
    }
}
