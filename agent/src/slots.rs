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
use std::path::{Path, PathBuf};

use bindwave_proto::SoftwareVersion;
use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::storage::Durability;
use crate::AgentError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
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
    /// The job that installed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

#[derive(Clone)]
pub struct Slots {
    dir: PathBuf,
    durability: Durability,
}

impl Slots {
    pub fn open(state_dir: &Path, durability: Durability) -> Result<Self, AgentError> {
        for slot in [Slot::A, Slot::B] {
            let d = state_dir.join("slots").join(slot.name());
            fs::create_dir_all(&d).map_err(|source| AgentError::StateDir { path: d.clone(), source })?;
        }
        Ok(Slots { dir: state_dir.to_path_buf(), durability })
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

    /// Copies a verified payload (`len` bytes at `offset` of `bind`) into the inactive slot, syncs it, and
    /// switches to it. The active record names the job, so a job found installed after a restart is not
    /// installed twice.
    pub fn install(
        &self,
        bind: &Path,
        offset: u64,
        len: u64,
        version: &SoftwareVersion,
        job_id: &str,
    ) -> Result<Active, AgentError> {
        let (slot, _) = self.stage(bind, offset, len)?;
        self.switch(slot, version, job_id)
    }

    /// Writes a verified payload into the inactive slot and syncs it; returns the slot and the payload's path.
    /// Nothing runs from it until [`Slots::switch`].
    pub fn stage(&self, bind: &Path, offset: u64, len: u64) -> Result<(Slot, PathBuf), AgentError> {
        let target = self.active()?.map_or(Slot::B, |a| a.slot.other());
        let slot_dir = self.dir.join("slots").join(target.name());
        let tmp = slot_dir.join("payload.tmp");
        let dest = slot_dir.join("payload");
        let copy = || -> std::io::Result<()> {
            let mut src = File::open(bind)?;
            std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(offset))?;
            let mut out = File::create(&tmp)?;
            let copied = std::io::copy(&mut std::io::Read::take(src, len), &mut out)?;
            if copied != len {
                return Err(std::io::Error::other(format!("the download holds {copied} of {len} payload bytes")));
            }
            self.durability.sync_file(&out)
        };
        copy().map_err(io_err("write the payload to", &tmp))?;
        fs::rename(&tmp, &dest).map_err(io_err("move the payload into", &dest))?;
        self.durability.sync_dir(&slot_dir).map_err(io_err("sync", &slot_dir))?;
        Ok((target, dest))
    }

    /// Makes a staged slot the active one, atomically.
    pub fn switch(&self, slot: Slot, version: &SoftwareVersion, job_id: &str) -> Result<Active, AgentError> {
        let active = Active { slot, version: version.clone(), job_id: Some(job_id.to_string()) };
        let path = self.dir.join("active");
        let record = encode(&active, &path)?;
        // Each slot remembers what it holds, so a rollback knows what it goes back to.
        self.durability.write_atomic(&self.dir.join("slots").join(slot.name()).join("record"), &record)?;
        self.durability.write_atomic(&path, &record)?;
        Ok(active)
    }

    /// What a slot holds, from its own record; `None` for a slot never written.
    pub fn record_of(&self, slot: Slot) -> Option<Active> {
        let bytes = fs::read(self.dir.join("slots").join(slot.name()).join("record")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Makes `previous` the active record again (or the factory software, with `None`): the rollback after a
    /// failed health check. Atomic, like the switch.
    pub fn restore(&self, previous: Option<&Active>) -> Result<(), AgentError> {
        let path = self.dir.join("active");
        match previous {
            Some(a) => self.durability.write_atomic(&path, &encode(a, &path)?),
            None => {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
                self.durability.sync_dir(&self.dir).map_err(io_err("sync", &self.dir))
            }
        }
    }
}

/// A slot record as JSON. A record that cannot be encoded is an error: an empty `active` would make the phone
/// forget what it runs.
fn encode(active: &Active, path: &Path) -> Result<Vec<u8>, AgentError> {
    serde_json::to_vec(active).map_err(|e| AgentError::Io {
        action: "encode the slot record for",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_alternate_slots_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::open(dir.path(), Durability::Full).unwrap();
        let factory: SoftwareVersion = "V3 R1.0.0".parse().unwrap();
        assert_eq!(slots.running_version(&factory).unwrap(), factory);

        let p = dir.path().join("dl");
        fs::write(&p, b"HEADERone").unwrap();
        let a = slots.install(&p, 6, 3, &"V3 R2.0.0".parse().unwrap(), "j1").unwrap();
        assert_eq!((a.slot, a.job_id.as_deref()), (Slot::B, Some("j1")));
        fs::write(&p, b"HEADERtwo").unwrap();
        let a = slots.install(&p, 6, 3, &"V3 R3.0.0".parse().unwrap(), "j2").unwrap();
        assert_eq!(a.slot, Slot::A);
        assert!(slots.install(&p, 6, 30, &"V3 R4.0.0".parse().unwrap(), "j3").is_err(), "a short file is refused");
        assert_eq!(slots.active().unwrap().unwrap().job_id.as_deref(), Some("j2"), "a failed install switches nothing");

        let reopened = Slots::open(dir.path(), Durability::Full).unwrap();
        assert_eq!(reopened.running_version(&factory).unwrap(), "V3 R3.0.0".parse().unwrap());
        assert_eq!(fs::read(dir.path().join("slots/a/payload")).unwrap(), b"two");
        assert_eq!(fs::read(dir.path().join("slots/b/payload")).unwrap(), b"one");
        assert!(!dir.path().join("active.tmp").exists());
    }
}
