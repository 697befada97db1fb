//! How the agent writes its state: files replaced atomically, and synced so that a power cut keeps them.
//!
//! A phone always runs with [`Durability::Full`]: every file that must survive a power cut (the journal, the slot
//! records, a staged payload, a partial download) is synced, and so is its directory after a rename. The
//! files that only show the current state (`status.json`, the indicator file) are replaced atomically without
//! a sync, as the agent writes them again at every start (`indicator.rs`). There is no config key to turn
//! that off. Only a simulator that runs thousands of agents on one disk asks for [`Durability::NoSync`]
//! ([`crate::Agent::with_durability`]): its phones never lose power, and a benchmark should measure the
//! controller, not one disk's fsync queue.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::io_err;
use crate::AgentError;

/// Whether the agent syncs what it writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every write that must survive a power cut is synced before the agent acts on it. A phone's only mode.
    #[default]
    Full,
    /// Files are written and renamed as with `Full`, but never synced: for simulated phones only.
    NoSync,
}

impl Durability {
    /// Syncs a written file's data and metadata (with `Full`).
    pub fn sync_file(self, file: &File) -> std::io::Result<()> {
        match self {
            Durability::Full => file.sync_all(),
            Durability::NoSync => Ok(()),
        }
    }

    /// Syncs a directory, so that a rename or removal in it is durable (with `Full`).
    pub fn sync_dir(self, dir: &Path) -> std::io::Result<()> {
        match self {
            Durability::Full => File::open(dir)?.sync_all(),
            Durability::NoSync => Ok(()),
        }
    }

    /// Replaces `path` with `bytes` so that a crash leaves either the old file or the new one, whole.
    pub fn write_atomic(self, path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(bytes).and_then(|()| self.sync_file(&f)).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("replace", path))?;
        if let Some(parent) = path.parent() {
            self.sync_dir(parent).map_err(io_err("sync", parent))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_replace_a_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        for durability in [Durability::Full, Durability::NoSync] {
            let path = dir.path().join("record");
            durability.write_atomic(&path, b"one").unwrap();
            durability.write_atomic(&path, b"two").unwrap();
            assert_eq!(fs::read(&path).unwrap(), b"two");
            assert!(!path.with_extension("tmp").exists());
        }
        assert_eq!(Durability::default(), Durability::Full, "a phone syncs unless a simulator says otherwise");
    }
}
