//! `[trust]`: the keys a phone pins, read from the config's own lines and from key files, and everything
//! that can be wrong with them (a line that is not a key, a file that cannot be read or holds no public key,
//! no release key at all on a phone that is not a lab phone).

use std::path::{Path, PathBuf};

use bindwave_proto::{PublicKey, TrustedKeys};
use bindwave_settings::Outcome;

use super::{AgentConfig, TrustSettings};
use crate::trust::ReleaseTrust;
use crate::AgentError;

/// What a phone that pins no release key is told.
pub(crate) const NO_RELEASE_KEY: &str = "no release key: pin the public key binds are signed with, in `keys` in \
     [trust] (keys = [\"ed25519:…\"], as `bindwave image keygen` prints it) or in `key_files` (its .pub file); \
     only a lab phone goes without, with insecure_lab = true in [trust]";

/// What a phone that pins no controller key is told.
pub(crate) const NO_CONTROLLER_KEY: &str = "no controller key is pinned: set `controller_keys` in [trust] (the \
     `ed25519:...` line the controller logs at start) or `controller_key_files` (a copy of its \
     data_dir/controller.key.pub); the phone acts only on commands signed by it (a lab without keys sets \
     `insecure_lab = true`)";

/// A problem with one key: the config key it is under, and what is wrong.
type KeyProblem = (&'static str, String);

impl TrustSettings {
    /// The release keys the phone pins and whether it is a lab phone, reading `key_files`. Without
    /// `insecure_lab`, at least one release key is required.
    pub fn release(&self) -> Result<ReleaseTrust, AgentError> {
        let keys = read_keys(("keys", &self.keys), ("key_files", &self.key_files)).map_err(invalid)?;
        if keys.is_empty() && !self.insecure_lab {
            return Err(AgentError::ConfigInvalid(NO_RELEASE_KEY.to_string()));
        }
        Ok(ReleaseTrust::new(keys, self.insecure_lab))
    }

    /// The controller's command-signing keys the phone pins, reading `controller_key_files`. Without
    /// `insecure_lab`, at least one is required.
    pub fn controller(&self) -> Result<TrustedKeys, AgentError> {
        let keys =
            read_keys(("controller_keys", &self.controller_keys), ("controller_key_files", &self.controller_key_files))
                .map_err(invalid)?;
        if keys.is_empty() && !self.insecure_lab {
            return Err(AgentError::ConfigInvalid(NO_CONTROLLER_KEY.to_string()));
        }
        Ok(keys)
    }
}

fn invalid(problems: Vec<KeyProblem>) -> AgentError {
    let text: Vec<String> = problems.into_iter().map(|(_, message)| message).collect();
    AgentError::ConfigInvalid(text.join("; "))
}

/// Adds what is wrong with `[trust]` to `out` (it reads the key files).
pub(super) fn check(config: &AgentConfig, out: &mut Outcome<AgentConfig>) {
    let trust = &config.trust;
    let release = read_keys(("keys", &trust.keys), ("key_files", &trust.key_files));
    let controller =
        read_keys(("controller_keys", &trust.controller_keys), ("controller_key_files", &trust.controller_key_files));
    for result in [&release, &controller] {
        if let Err(problems) = result {
            for (key, message) in problems {
                out.problem(&["trust", key], message.clone());
            }
        }
    }
    if release.is_ok_and(|k| k.is_empty()) && !trust.insecure_lab {
        out.problem(&["trust", "keys"], NO_RELEASE_KEY);
    }
    if controller.is_ok_and(|k| k.is_empty()) && !trust.insecure_lab {
        out.problem(&["trust", "controller_keys"], NO_CONTROLLER_KEY);
    }
}

/// The keys of one purpose: every line and every file, or every problem with them.
fn read_keys(
    lines: (&'static str, &[String]),
    files: (&'static str, &[PathBuf]),
) -> Result<TrustedKeys, Vec<KeyProblem>> {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    let (lines_key, lines) = lines;
    for (i, line) in lines.iter().enumerate() {
        match PublicKey::parse(line) {
            Ok(key) => keys.push(key),
            Err(e) => problems.push((lines_key, format!("`{lines_key}` in [trust], entry {}: {e}", i + 1))),
        }
    }
    let (files_key, files) = files;
    for path in files {
        match read_key_file(path) {
            Ok(key) => keys.push(key),
            Err(why) => problems.push((files_key, format!("`{files_key}` in [trust]: {why}"))),
        }
    }
    if problems.is_empty() {
        Ok(TrustedKeys::new(keys))
    } else {
        Err(problems)
    }
}

/// One public key file, or why it is not one.
fn read_key_file(path: &Path) -> Result<PublicKey, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read {shown}: {e} (give the path of a public key file, such as release.key.pub)")
    })?;
    if text.contains("PRIVATE KEY") {
        return Err(format!(
            "{shown} is a private key: pin its public half ({shown}.pub, written beside it by `bindwave image \
             keygen`), and keep the private key off the phones"
        ));
    }
    PublicKey::parse(&text).map_err(|e| format!("{shown} is not a public key: {e}"))
}
