//! The store's records as one stream of JSON lines, out of a live store and into a new one: what
//! `bindwave backup` carries and `bindwave restore` writes back.
//!
//! Each line is `{"tree":"devices","value":{...}}`, the value exactly as the store holds it. Keys are not
//! written: every key follows from its record (the store's own `encode`, and a token's SHA-256), so a restore
//! writes them as the controller itself would, and a line that is not a record of its tree is refused, not
//! written.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::engine::Record;
use crate::tokens::TokenRecord;
use crate::ControllerError;

/// The trees a backup holds, in the order they are written and restored (rollouts before their members and
/// jobs, as the engine reads them).
pub const TREES: [&str; 7] = ["devices", "images", "rollouts", "members", "jobs", "audit", "tokens"];

/// Records per tree.
pub type Counts = BTreeMap<String, u64>;

/// What [`Store::export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub counts: Counts,
    /// The store's generation when it was copied.
    pub generation: u64,
    /// The SHA-256 of every image, whose binds belong beside the records.
    pub images: Vec<String>,
}

/// One line of the stream, as read back.
#[derive(Deserialize)]
struct Line<'a> {
    tree: String,
    #[serde(borrow)]
    value: &'a serde_json::value::RawValue,
}

/// One line of the stream, as written.
#[derive(Serialize)]
struct LineOut<'a> {
    tree: &'a str,
    value: &'a serde_json::value::RawValue,
}

impl Store {
    /// Writes every record to `out` and returns the count of each tree and the store's generation. Called by
    /// the core between batches, after the last flush: the engine's trees hold exactly what the engine knows,
    /// and nothing writes them while this runs. (Tokens are written apart from the core; each is copied as it
    /// is at the moment it is read.)
    pub fn export(&self, out: &mut impl Write) -> Result<Exported, ControllerError> {
        let tokens = self.db.open_tree("tokens")?;
        let trees = [&self.devices, &self.images, &self.rollouts, &self.members, &self.jobs, &self.audit, &tokens];
        let (mut counts, mut images) = (Counts::new(), Vec::new());
        for (name, tree) in TREES.into_iter().zip(trees) {
            let mut n = 0;
            for item in tree.iter() {
                let (key, value) = item?;
                if name == "images" {
                    images.push(String::from_utf8_lossy(&key).into_owned());
                }
                let text = std::str::from_utf8(&value).map_err(|_| damaged(self, name, "is not UTF-8"))?;
                let raw = serde_json::value::RawValue::from_string(text.to_string())
                    .map_err(|e| damaged(self, name, &format!("is not JSON ({e})")))?;
                let line = serde_json::to_vec(&LineOut { tree: name, value: &raw })
                    .map_err(|e| ControllerError::StoreEncode { key: name.into(), detail: e.to_string() })?;
                out.write_all(&line).and_then(|()| out.write_all(b"\n")).map_err(|e| write_failed(self, &e))?;
                n += 1;
            }
            counts.insert(name.to_string(), n);
        }
        Ok(Exported { counts, generation: self.generation.load(std::sync::atomic::Ordering::Relaxed), images })
    }

    /// Reads a stream [`Store::export`] wrote into this store (a new, empty one), checking each record as the
    /// controller reads it at start-up, and flushes it. Returns the count of each tree.
    pub async fn import(&self, lines: impl BufRead) -> Result<Counts, ControllerError> {
        let tokens = self.db.open_tree("tokens")?;
        let mut counts: Counts = TREES.iter().map(|t| (t.to_string(), 0)).collect();
        let mut pending = Vec::with_capacity(super::BATCH_RECORDS);
        for (i, line) in lines.lines().enumerate() {
            let at = i + 1;
            let line = line.map_err(|e| bad_line(at, &format!("cannot be read ({e})")))?;
            if line.trim().is_empty() {
                continue;
            }
            let Line { tree, value } = serde_json::from_str(&line).map_err(|e| bad_line(at, &e.to_string()))?;
            let value = value.get();
            let record = match tree.as_str() {
                "devices" => Record::Device(Box::new(decode(at, &tree, value)?)),
                "images" => Record::Image(decode(at, &tree, value)?),
                "rollouts" => Record::Rollout(Box::new(decode(at, &tree, value)?)),
                "members" => Record::Members(decode(at, &tree, value)?),
                "jobs" => Record::Job(decode(at, &tree, value)?),
                "audit" => Record::Audit(decode(at, &tree, value)?),
                "tokens" => {
                    let token: TokenRecord = decode(at, &tree, value)?;
                    tokens.insert(token.sha256.as_bytes(), value.as_bytes())?;
                    *counts.entry(tree).or_default() += 1;
                    continue;
                }
                other => return Err(bad_line(at, &format!("names a tree {other:?} the store does not have"))),
            };
            *counts.entry(tree).or_default() += 1;
            pending.push(record);
            if pending.len() == super::BATCH_RECORDS {
                self.put(&std::mem::take(&mut pending))?;
            }
        }
        self.put(&pending)?;
        self.flush().await?;
        tokens.flush_async().await?;
        Ok(counts)
    }
}

fn decode<T: DeserializeOwned>(at: usize, tree: &str, value: &str) -> Result<T, ControllerError> {
    serde_json::from_str(value).map_err(|e| bad_line(at, &format!("is not a record of {tree} ({e})")))
}

fn bad_line(at: usize, what: &str) -> ControllerError {
    ControllerError::BadRequest(format!("line {at} of the records {what}"))
}

fn damaged(store: &Store, tree: &str, what: &str) -> ControllerError {
    ControllerError::StoreDamaged { path: store.dir.clone(), detail: format!("a record of {tree} {what}") }
}

fn write_failed(store: &Store, e: &std::io::Error) -> ControllerError {
    ControllerError::Backup { path: store.dir.clone(), detail: format!("cannot copy the store's records: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{hello, id};
    use crate::model::Device;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// What one store exports, another imports, record for record, keys and all; a line that is not a record
    /// of its tree is refused with its number.
    #[test]
    fn an_export_imports_into_a_new_store_record_for_record() {
        rt().block_on(async {
            let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let store = Store::open(from.path()).unwrap();
            let devices: Vec<Record> = (0..super::super::BATCH_RECORDS + 5)
                .map(|i| {
                    let name = format!("phone-{i:05}");
                    Record::Device(Box::new(Device {
                        id: id(&name),
                        hello: Some(hello(&name, 2, "V3 R1.0.0")),
                        online: i % 2 == 0,
                        last_seen: i as u64,
                        changes: Vec::new(),
                    }))
                })
                .collect();
            store.put(&devices).unwrap();
            store.flush().await.unwrap();
            store.tokens().unwrap().create("alice", crate::tokens::Role::Operator).await.unwrap();
            let mut out = Vec::new();
            let Exported { counts, generation, images } = store.export(&mut out).unwrap();
            assert_eq!(counts["devices"], devices.len() as u64);
            assert_eq!(counts["tokens"], 1);
            assert_eq!(generation, 1);
            assert!(images.is_empty());

            let restored = Store::open(to.path()).unwrap();
            let read = restored.import(&out[..]).await.unwrap();
            assert_eq!(read, counts);
            let mut loaded = Vec::new();
            restored.load(|r| loaded.push(r)).unwrap();
            assert_eq!(loaded.len(), devices.len());
            for (a, b) in store.devices.iter().zip(restored.devices.iter()) {
                assert_eq!(a.unwrap(), b.unwrap(), "a device's key or value changed");
            }
            let names: Vec<String> = restored.tokens().unwrap().list().unwrap().into_iter().map(|t| t.name).collect();
            assert_eq!(names, ["alice"]);

            let third = tempfile::tempdir().unwrap();
            let bad = b"{\"tree\":\"devices\",\"value\":{\"id\":\"x\"}}\n";
            let e = Store::open(third.path()).unwrap().import(&bad[..]).await.unwrap_err().to_string();
            assert!(e.contains("line 1") && e.contains("not a record of devices"), "{e}");
        });
    }
}
