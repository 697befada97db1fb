//! The A/B slot installer.
//!
//! ```text
//! state_dir/
//!   active              {"slot":"b","version":"V3 R3.18.0"}   which slot runs, replaced atomically
//!   slots/a/payload     the image in slot a
//!   slots/b/payload     the image in slot b
//! ```
//!
//! An install writes the inactive slot, syncs it, and only then replaces `active` by an atomic rename. A
//! power cut at any point leaves `active` naming a slot that was fully written before the switch: either the
//! old one or the new one, never a half-written one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use bindwave_proto::SoftwareVersion;
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::AgentError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

/// The record in `active`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub slot: Slot,
    pub version: SoftwareVersion,
}

#[derive(Clone)]
pub struct Slots {
    dir: PathBuf,
}

impl Slots {
    pub fn open(state_dir: &Path) -> Result<Self, AgentError> {
        for slot in [Slot::A, Slot::B] {
            let d = state_dir.join("slots").join(slot.name());
            fs::create_dir_all(&d).map_err(|source| AgentError::StateDir { path: d.clone(), source })?;
        }
        Ok(Slots { dir: state_dir.to_path_buf() })
    }

    /// The active slot's record, or `None` while the phone still runs its factory software.
    pub fn active(&self) -> Result<Option<Active>, AgentError> {
        let path = self.dir.join("active");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| AgentError::Io {
                action: "parse the active slot record",
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AgentError::Io { action: "read", path, source }),
        }
    }

    /// The version that runs: the active slot's, or the factory version.
    pub fn running_version(&self, factory: &SoftwareVersion) -> Result<SoftwareVersion, AgentError> {
        Ok(self.active()?.map_or_else(|| factory.clone(), |a| a.version))
    }

    /// Moves a verified payload into the inactive slot, syncs it, and switches to it.
    /// `payload` must be on the same file system as the state directory.
    pub fn install(&self, payload: &Path, version: &SoftwareVersion) -> Result<Active, AgentError> {
        let target = self.active()?.map_or(Slot::B, |a| a.slot.other());
        let slot_dir = self.dir.join("slots").join(target.name());
        let dest = slot_dir.join("payload");
        File::open(payload).and_then(|f| f.sync_all()).map_err(io_err("sync", payload))?;
        fs::rename(payload, &dest).map_err(io_err("move the payload into", &dest))?;
        sync_dir(&slot_dir).map_err(io_err("sync", &slot_dir))?;
        let active = Active { slot: target, version: version.clone() };
        let record = serde_json::to_vec(&active).unwrap_or_default();
        write_atomic(&self.dir.join("active"), &record)?;
        Ok(active)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old file or the new one, whole.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("replace", path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent).map_err(io_err("sync", parent))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_alternate_slots_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::open(dir.path()).unwrap();
        let factory: SoftwareVersion = "V3 R1.0.0".parse().unwrap();
        assert_eq!(slots.running_version(&factory).unwrap(), factory);

        let p = dir.path().join("dl");
        fs::write(&p, b"one").unwrap();
        let a = slots.install(&p, &"V3 R2.0.0".parse().unwrap()).unwrap();
        assert_eq!(a.slot, Slot::B);
        fs::write(&p, b"two").unwrap();
        let a = slots.install(&p, &"V3 R3.0.0".parse().unwrap()).unwrap();
        assert_eq!(a.slot, Slot::A);

        let reopened = Slots::open(dir.path()).unwrap();
        assert_eq!(reopened.running_version(&factory).unwrap(), "V3 R3.0.0".parse().unwrap());
        assert_eq!(fs::read(dir.path().join("slots/a/payload")).unwrap(), b"two");
        assert_eq!(fs::read(dir.path().join("slots/b/payload")).unwrap(), b"one");
        assert!(!dir.path().join("active.tmp").exists());
    }
}
