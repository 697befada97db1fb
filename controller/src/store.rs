//! Records on disk, in sled.
//!
//! One tree per kind of record (devices, images, rollouts, jobs, audit), JSON values (readable with any sled tool, and versionable). The service
//! writes each batch of changes and flushes once for the batch (group commit) before it acts on them.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::Record;
use crate::ControllerError;

pub struct Store {
    db: sled::Db,
    devices: sled::Tree,
    images: sled::Tree,
    rollouts: sled::Tree,
    jobs: sled::Tree,
    audit: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, ControllerError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|source| ControllerError::StoreOpen { path: dir.to_path_buf(), source })?;
        Ok(Store {
            devices: db.open_tree("devices")?,
            images: db.open_tree("images")?,
            rollouts: db.open_tree("rollouts")?,
            jobs: db.open_tree("jobs")?,
            audit: db.open_tree("audit")?,
            db,
        })
    }

    /// Every stored record, for the engine to start from.
    pub fn load(&self) -> Result<Vec<Record>, ControllerError> {
        let mut out = Vec::new();
        load_tree(&self.devices, &mut out, Record::Device)?;
        load_tree(&self.images, &mut out, Record::Image)?;
        load_tree(&self.rollouts, &mut out, Record::Rollout)?;
        load_tree(&self.jobs, &mut out, Record::Job)?;
        load_tree(&self.audit, &mut out, Record::Audit)?;
        Ok(out)
    }

    /// Writes records, one sled batch per tree. Not durable until [`Store::flush`].
    pub fn put<'a>(&self, records: impl IntoIterator<Item = &'a Record>) -> Result<(), ControllerError> {
        let mut batches: [sled::Batch; 5] = Default::default();
        for r in records {
            let (i, key, value) = match r {
                Record::Device(d) => (0, d.id.to_string().into_bytes(), json(d)),
                Record::Image(img) => (1, img.sha256.to_string().into_bytes(), json(img)),
                Record::Rollout(ro) => (2, ro.id.to_string().into_bytes(), json(ro)),
                Record::Job(j) => (3, format!("{}/{}", j.rollout, j.device).into_bytes(), json(j)),
                // Big-endian sequence numbers keep the log in order.
                Record::Audit(a) => (4, a.seq.to_be_bytes().to_vec(), json(a)),
            };
            let value = value.map_err(|detail| ControllerError::StoreEncode {
                key: String::from_utf8_lossy(&key).into_owned(),
                detail,
            })?;
            batches[i].insert(key, value);
        }
        let [d, i, r, j, a] = batches;
        self.devices.apply_batch(d)?;
        self.images.apply_batch(i)?;
        self.rollouts.apply_batch(r)?;
        self.jobs.apply_batch(j)?;
        self.audit.apply_batch(a)?;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), ControllerError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// The operators' tokens, in a tree of their own that the HTTP API reads apart from the core.
    pub fn tokens(&self) -> Result<crate::token_store::TokenStore, ControllerError> {
        Ok(crate::token_store::TokenStore::new(self.db.open_tree("tokens")?))
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// A record's JSON. Nothing is written when it cannot be encoded: an empty value would read back as corrupt.
fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| e.to_string())
}

fn load_tree<T: DeserializeOwned>(
    tree: &sled::Tree,
    out: &mut Vec<Record>,
    wrap: fn(T) -> Record,
) -> Result<(), ControllerError> {
    for item in tree.iter() {
        let (key, value) = item?;
        let record = serde_json::from_slice(&value).map_err(|e| ControllerError::StoreCorrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            detail: e.to_string(),
        })?;
        out.push(wrap(record));
    }
    Ok(())
}
