//! Records on disk, in sled.
//!
//! One tree per kind of record (devices, images, rollouts, members, jobs, audit), JSON values (readable with
//! any sled tool, and versionable). The service writes each batch of changes and flushes once for the batch
//! (group commit) before it acts on them.
//!
//! Damage is refused, never restored as older data. sled checks each log entry's CRC at start-up, but it takes
//! the first bad entry for the torn end of a crash and starts from the entries before it: a few flipped bytes in
//! the middle of its `db` file would roll the store back without a word. So every flush also writes a
//! generation number into the store, and at most once a second the flushed generation goes to a marker file
//! beside sled's own ([`generation`]); a store that opens at an older generation than its marker has lost
//! records it once made durable, and is refused as damaged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod backup;
mod generation;

use crate::engine::Record;
use crate::ControllerError;

/// sled's page cache. The engine holds every record in memory and reads the store only at start-up, so the
/// cache serves writes alone: sled's default (1 GiB) would keep a copy of a large fleet's store resident for
/// nothing.
const CACHE_BYTES: u64 = 64 << 20;
/// The key, in the `meta` tree, of the controller's time at each flush.
const TIME_KEY: &[u8] = b"time";
/// How long opening the store waits for another process's lock on it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled reports a held lock as an `Other` error whose text carries the `WouldBlock` of the failed `flock`.
fn locked(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

/// Records in one sled batch. sled keeps every version of the nodes a batch touches until the batch ends: one
/// batch of 100,000 records took 500 MB, batches of 1,000 take 50 MB, in the same time (measured with sled
/// 0.34.7 alone).
const BATCH_RECORDS: usize = 1_000;

pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    /// The generation of the last flush.
    generation: AtomicU64,
    /// The controller's time at the last flush before this store was opened.
    last_time: u64,
    /// The marker file's writer, which keeps it at most a second behind.
    marker: Arc<generation::Marker>,
    devices: sled::Tree,
    images: sled::Tree,
    rollouts: sled::Tree,
    members: sled::Tree,
    jobs: sled::Tree,
    audit: sled::Tree,
}

impl Store {
    /// Opens the store in `dir`. A lock held by another process is waited for up to [`LOCK_WAIT`]: a controller
    /// that is restarted may start while the one before it is still exiting (and sled's background thread
    /// keeps the lock a moment past the last handle's drop, within one process too).
    pub fn open(dir: &Path) -> Result<Self, ControllerError> {
        let config = sled::Config::new().path(dir).cache_capacity(CACHE_BYTES);
        let waited = std::time::Instant::now();
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock || locked(&e) => {
                    if waited.elapsed() >= LOCK_WAIT {
                        return Err(ControllerError::StoreLocked {
                            path: dir.to_path_buf(),
                            source: sled::Error::Io(e),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(source) => return Err(damaged_or_unopened(dir, source)),
            }
        };
        let meta = db.open_tree("meta").map_err(|e| damaged_or_unopened(dir, e))?;
        let stored = generation::read_stored(&meta)
            .map_err(|detail| ControllerError::StoreDamaged { path: dir.to_path_buf(), detail })?;
        let marked = generation::read_marker(dir)?;
        if stored < marked {
            return Err(ControllerError::StoreDamaged {
                path: dir.to_path_buf(),
                detail: format!(
                    "its records end at generation {stored}, but generation {marked} was made durable before \
                     ({}): sled started from older records, which is what damage to its `db` file looks like",
                    generation::MARKER
                ),
            });
        }
        let last_time = meta
            .get(TIME_KEY)
            .ok()
            .flatten()
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes);
        Ok(Store {
            dir: dir.to_path_buf(),
            last_time,
            meta,
            generation: AtomicU64::new(stored),
            marker: Arc::new(generation::Marker::new(marked)),
            devices: db.open_tree("devices")?,
            images: db.open_tree("images")?,
            rollouts: db.open_tree("rollouts")?,
            members: db.open_tree("members")?,
            jobs: db.open_tree("jobs")?,
            audit: db.open_tree("audit")?,
            db,
        })
    }

    /// Hands every stored record to `each`, rollouts before their members and members before their jobs, for the
    /// engine to start from. One
    /// record at a time: a large fleet's store is never held twice in memory.
    pub fn load(&self, mut each: impl FnMut(Record)) -> Result<(), ControllerError> {
        let dir = &self.dir;
        load_tree(dir, &self.devices, &mut each, |d| Record::Device(Box::new(d)))?;
        load_tree(dir, &self.images, &mut each, Record::Image)?;
        load_tree(dir, &self.rollouts, &mut each, |r| Record::Rollout(Box::new(r)))?;
        load_tree(dir, &self.members, &mut each, Record::Members)?;
        load_tree(dir, &self.jobs, &mut each, Record::Job)?;
        load_tree(dir, &self.audit, &mut each, Record::Audit)?;
        Ok(())
    }

    /// Writes records, in sled batches of at most [`BATCH_RECORDS`] per tree: jobs, members, then devices,
    /// images, rollouts and audit entries. Not durable until [`Store::flush`].
    ///
    /// A crash before the flush may keep part of what was written: sled writes in the background too, and a
    /// batch is atomic within one tree only. The order makes every such part harmless. Jobs and members are
    /// written before the rollout that owns them, so a new rollout is never restored without its members (what
    /// belongs to a missing rollout is ignored at start-up); a part of a wave's jobs marked `sent` is sent again, which the devices
    /// answer from their journals. Nothing outside heard of any of it: the core acts only after the flush.
    pub fn put(&self, records: &[Record]) -> Result<(), ControllerError> {
        let trees = [&self.jobs, &self.members, &self.devices, &self.images, &self.rollouts, &self.audit];
        for (i, tree) in trees.into_iter().enumerate() {
            // Encoded a sled batch at a time: a wave of a million jobs is never held as JSON all at once.
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for (key, value) in records.iter().filter_map(|r| encode(r, i)) {
                let value = value.map_err(|detail| ControllerError::StoreEncode {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    detail,
                })?;
                batch.insert(key, value);
                in_batch += 1;
                if in_batch == BATCH_RECORDS {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                    in_batch = 0;
                }
            }
            if in_batch > 0 {
                tree.apply_batch(batch)?;
            }
        }
        Ok(())
    }

    /// Makes everything written so far durable, with the next generation; then, at most once a second and off
    /// this task, records that generation in the marker file.
    pub async fn flush(&self) -> Result<(), ControllerError> {
        let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.meta.insert(generation::KEY, &g.to_be_bytes())?;
        self.meta.insert(TIME_KEY, &crate::clock::now_millis().to_be_bytes())?;
        self.db.flush_async().await?;
        if self.marker.claim() {
            let (marker, dir) = (self.marker.clone(), self.dir.clone());
            tokio::task::spawn_blocking(move || marker.write(&dir, g));
        }
        Ok(())
    }

    /// The controller's time at the last flush before this store was opened (0 for a new store): its time
    /// never starts behind it ([`crate::clock::not_before`]).
    pub fn last_time(&self) -> u64 {
        self.last_time
    }

    /// Writes the marker of the last flush now, rather than within a second: for a store closed at once and
    /// moved (a restore).
    pub fn mark_now(&self) {
        self.marker.write(&self.dir, self.generation.load(Ordering::Relaxed));
    }

    /// The operators' tokens, in a tree of their own that the HTTP API reads apart from the core.
    /// The webhook deliveries (`webhooks`): written by the core with the audit entries they come from, and by
    /// the deliverer as it tries.
    pub fn deliveries(&self) -> Result<crate::webhooks::Deliveries, ControllerError> {
        crate::webhooks::Deliveries::new(self.db.open_tree("webhooks")?)
    }

    pub fn tokens(&self) -> Result<crate::token_store::TokenStore, ControllerError> {
        Ok(crate::token_store::TokenStore::new(self.db.open_tree("tokens")?))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// An error from opening sled: a file sled cannot read (a bad entry, a file cut short) is damage; anything else
/// (permissions, a full disk) is [`ControllerError::StoreOpen`], with sled's own words.
fn damaged_or_unopened(dir: &Path, source: sled::Error) -> ControllerError {
    use std::io::ErrorKind::{InvalidData, UnexpectedEof};
    match source {
        sled::Error::Corruption { .. } => ControllerError::StoreDamaged {
            path: dir.to_path_buf(),
            detail: "sled found a damaged entry in its files (`conf` or `db`)".into(),
        },
        sled::Error::Io(e) if matches!(e.kind(), InvalidData | UnexpectedEof) => {
            ControllerError::StoreDamaged { path: dir.to_path_buf(), detail: e.to_string() }
        }
        source => ControllerError::StoreOpen { path: dir.to_path_buf(), source },
    }
}

/// A record's JSON. Nothing is written when it cannot be encoded: an empty value would read back as corrupt.
fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

/// A record's key and value in tree `tree` (the order of [`Store::put`]: jobs, members, devices, images,
/// rollouts, audit), or `None` if it belongs to another tree.
#[allow(clippy::type_complexity)]
fn encode(record: &Record, tree: usize) -> Option<(Vec<u8>, Result<Vec<u8>, String>)> {
    Some(match (record, tree) {
        (Record::Job(j), 0) => (format!("{}/{}", j.rollout, j.device).into_bytes(), json(j)),
        // Zero-padded plan order keeps a rollout's members in order.
        (Record::Members(m), 1) => (format!("{}/{:010}", m.rollout, m.first).into_bytes(), json(m)),
        (Record::Device(d), 2) => (d.id.to_string().into_bytes(), json(d)),
        (Record::Image(img), 3) => (img.sha256.to_string().into_bytes(), json(img)),
        (Record::Rollout(ro), 4) => (ro.id.to_string().into_bytes(), json(ro)),
        // Big-endian sequence numbers keep the log in order.
        (Record::Audit(a), 5) => (a.seq.to_be_bytes().to_vec(), json(a)),
        _ => return None,
    })
}

/// Reads one tree; a record sled cannot read back, or one that is not the JSON of its kind, is damage.
fn load_tree<T: DeserializeOwned>(
    dir: &Path,
    tree: &sled::Tree,
    each: &mut impl FnMut(Record),
    wrap: fn(T) -> Record,
) -> Result<(), ControllerError> {
    let name = String::from_utf8_lossy(&tree.name()).into_owned();
    for item in tree.iter() {
        let (key, value) = item.map_err(|e| match damaged_or_unopened(dir, e) {
            ControllerError::StoreOpen { source, .. } => ControllerError::Store(source),
            damaged => damaged,
        })?;
        let record = serde_json::from_slice(&value).map_err(|e| ControllerError::StoreDamaged {
            path: dir.to_path_buf(),
            detail: format!("record {}/{} is unreadable ({e})", name, String::from_utf8_lossy(&key)),
        })?;
        each(wrap(record));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{hello, id};
    use crate::model::Device;

    /// A store another handle holds is waited for, then refused with the error that names the directory.
    #[test]
    fn a_store_held_elsewhere_is_refused_after_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        let t0 = std::time::Instant::now();
        let e = Store::open(dir.path()).err().expect("a second open of a held store");
        assert!(t0.elapsed() >= LOCK_WAIT, "refused after {:?}, before the wait was over", t0.elapsed());
        assert!(matches!(e, ControllerError::StoreLocked { .. }), "{e:?}");
        assert!(e.to_string().contains("another `bindwave serve`"), "{e}");
    }

    /// `n` device records, device `i` last seen at `seen(i)`.
    fn devices(n: usize, seen: impl Fn(usize) -> u64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let name = format!("phone-{i:05}");
                Record::Device(Box::new(Device {
                    id: id(&name),
                    hello: Some(hello(&name, 2, "V3 R1.0.0")),
                    online: false,
                    last_seen: seen(i),
                    changes: Vec::new(),
                }))
            })
            .collect()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Writes `rounds` generations of the same devices, the last one a second after the one before so that the
    /// marker holds it, and closes the store.
    fn written(dir: &Path, rounds: u64) {
        rt().block_on(async {
            let store = Store::open(dir).unwrap();
            for round in 1..=rounds {
                if round == rounds {
                    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
                }
                store.put(&devices(300, |_| round)).unwrap();
                store.flush().await.unwrap();
            }
            // The marker's write runs on the blocking pool: let it finish.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        });
    }

    /// A store that opens at an older generation than its marker says was durable is refused as damaged, with
    /// what to do.
    #[test]
    fn a_store_behind_its_marker_is_refused_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path(), 3);
        let marker = std::fs::read_to_string(dir.path().join(generation::MARKER)).unwrap();
        assert_eq!(marker.trim(), "3");
        assert!(Store::open(dir.path()).is_ok(), "an undamaged store opens");
        std::fs::write(dir.path().join(generation::MARKER), "7\n").unwrap();
        let e = Store::open(dir.path()).err().expect("a store behind its marker");
        assert!(matches!(e, ControllerError::StoreDamaged { .. }), "{e:?}");
        let msg = e.to_string();
        for words in ["is damaged", "generation 3", "generation 7", "from a backup", "start again"] {
            assert!(msg.contains(words), "{words:?} not in: {msg}");
        }
    }

    /// Bytes flipped in the middle of sled's `db` file (which sled alone restores as older records), truncated
    /// files, and a garbled marker: each is refused as damage, never taken for a held lock.
    #[test]
    fn damaged_files_are_refused_as_damage_never_opened_on_older_records() {
        type Damage = fn(&Path);
        let flip: Damage = |dir| {
            let path = dir.join("db");
            let mut bytes = std::fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 8] {
                *b ^= 0xff;
            }
            std::fs::write(&path, bytes).unwrap();
        };
        let truncate_db: Damage = |dir| {
            let f = std::fs::OpenOptions::new().write(true).open(dir.join("db")).unwrap();
            f.set_len(f.metadata().unwrap().len() / 3).unwrap();
        };
        let truncate_conf: Damage = |dir| {
            let f = std::fs::OpenOptions::new().write(true).open(dir.join("conf")).unwrap();
            f.set_len(f.metadata().unwrap().len() / 2).unwrap();
        };
        let garble_marker: Damage = |dir| std::fs::write(dir.join(generation::MARKER), "twelve").unwrap();
        for (what, damage) in [
            ("flipped db", flip),
            ("truncated db", truncate_db),
            ("truncated conf", truncate_conf),
            ("marker", garble_marker),
        ] {
            let dir = tempfile::tempdir().unwrap();
            written(dir.path(), 3);
            damage(dir.path());
            let e = Store::open(dir.path()).err().unwrap_or_else(|| panic!("{what}: the damaged store opened"));
            assert!(matches!(e, ControllerError::StoreDamaged { .. }), "{what}: {e:?}");
            assert!(!e.to_string().contains("another `bindwave serve`"), "{what}: {e}");
        }
    }

    /// More records than one sled batch holds come back whole, each once.
    #[test]
    fn records_beyond_one_batch_are_all_written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let n = BATCH_RECORDS * 2 + 1;
        let devices = devices(n, |i| i as u64);
        store.put(&devices).unwrap();
        drop(store);
        let mut loaded = Vec::new();
        Store::open(dir.path()).unwrap().load(|r| loaded.push(r)).unwrap();
        assert_eq!(loaded.len(), n);
        loaded.sort_by_key(|r| match r {
            Record::Device(d) => d.last_seen,
            _ => u64::MAX,
        });
        assert_eq!(loaded, devices);
    }
}
