//! The store's generation: a number each flush raises, kept inside the store and, a second behind at most, in
//! a marker file beside sled's files. A store whose own generation is below its marker's has lost records that
//! were once durable (see the module above).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ControllerError;

/// The key of the generation in the store's `meta` tree.
pub const KEY: &[u8] = b"generation";
/// The marker file, in the store's directory.
pub const MARKER: &str = "bindwave-generation";
/// How far the marker may lag the store: damage that loses only the last second's records before a crash
/// looks like the crash itself, and is not told apart.
const EVERY: Duration = Duration::from_secs(1);

/// The generation in the store: 0 for a store that never flushed one.
pub fn read_stored(meta: &sled::Tree) -> Result<u64, String> {
    match meta.get(KEY).map_err(|e| e.to_string())? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| format!("its generation record holds {} bytes, not 8", v.len())),
    }
}

/// The marker's generation: 0 when there is no marker (a new store, or one from before markers).
pub fn read_marker(dir: &Path) -> Result<u64, ControllerError> {
    let path = dir.join(MARKER);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| ControllerError::StoreDamaged {
            path: dir.to_path_buf(),
            detail: format!("{} holds {:?}, not a generation number", path.display(), text.trim()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(ControllerError::Io { action: "read", path, source }),
    }
}

/// Writes the marker at most once every [`EVERY`], never backwards.
pub struct Marker {
    last: Mutex<(u64, Instant)>,
}

impl Marker {
    pub fn new(generation: u64) -> Marker {
        let long_ago = Instant::now().checked_sub(EVERY).unwrap_or_else(Instant::now);
        Marker { last: Mutex::new((generation, long_ago)) }
    }

    /// Whether a write is due; if so, the next is not due for another [`EVERY`], so that one write is in
    /// flight at a time.
    pub fn claim(&self) -> bool {
        let Ok(mut last) = self.last.lock() else { return false };
        let due = last.1.elapsed() >= EVERY;
        if due {
            last.1 = Instant::now();
        }
        due
    }

    /// Records `generation` (already flushed into the store) in the marker: a new file, synced, renamed over
    /// the old one. A failure is logged and tried again a second later: the marker only ever lags.
    pub fn write(&self, dir: &Path, generation: u64) {
        let Ok(mut last) = self.last.lock() else { return };
        if generation <= last.0 {
            return;
        }
        let (tmp, path) = (dir.join(format!("{MARKER}.tmp")), dir.join(MARKER));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(format!("{generation}\n").as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| std::fs::File::open(dir)?.sync_all());
        match written {
            Ok(()) => last.0 = generation,
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot write the store's generation marker"),
        }
    }
}
