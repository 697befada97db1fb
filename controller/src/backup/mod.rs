//! A backup of a controller: one tar file (readable with `tar tf`) that holds all a new controller needs to
//! carry on where this one was.
//!
//! - `bindwave-backup.json`, first: the format, when, the store's generation, the records per tree, the files.
//! - `records.jsonl`: every record of the store, copied by the core between two batches (a consistent copy of
//!   a live controller; see `store::backup`).
//! - `files/...`: the rest of the data directory as it is: the command key the phones pin, the broker secret
//!   their passwords derive from, the development CA they trust, the first admin token.
//! - `images/<sha256>.bind`: the bind of every image the records name (unless left out: `--without-images`).
//!
//! A backup holds the controller's secrets: keep it as the data directory itself is kept. [`take`] streams one
//! from a live controller; [`restore`] writes a new data directory from one, whole or not at all.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::Millis;
use crate::store::backup::{Counts, Exported};
use crate::ControllerError;

mod restore;
mod take;

pub use restore::{restore, Restored};
pub use take::take;

/// The format this controller writes and reads.
pub const FORMAT: &str = "bindwave-backup/1";
/// The archive's entries.
const MANIFEST: &str = "bindwave-backup.json";
const RECORDS: &str = "records.jsonl";
const FILES: &str = "files/";
const IMAGES: &str = "images/";
/// Where a backup's records are copied to, inside the data directory (never itself backed up).
pub const WORK_DIR: &str = ".backup";
/// The parts of the data directory that are not its files: the store and the images (copied their own
/// ways), and backups in the making.
const NOT_FILES: [&str; 3] = ["store", "images", WORK_DIR];
/// The largest manifest read: a backup of a hundred thousand images has a manifest of about 7 MiB.
const MANIFEST_LIMIT: u64 = 64 << 20;

/// The archive's first entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_at: Millis,
    /// The version of the controller that wrote it.
    pub controller_version: String,
    /// The store's generation when its records were copied.
    pub generation: u64,
    pub records: Counts,
    /// The data directory's files (beside the store and the images), as paths inside it.
    pub files: Vec<String>,
    /// The images' SHA-256, each a bind in `images/` if `images_included`.
    pub images: Vec<String>,
    pub images_included: bool,
}

impl Manifest {
    /// The manifest of a backup of `data_dir` whose records the core exported as `exported`.
    pub fn of(
        data_dir: &Path,
        exported: &Exported,
        include_images: bool,
        created_at: Millis,
    ) -> Result<Manifest, ControllerError> {
        Ok(Manifest {
            format: FORMAT.into(),
            created_at,
            controller_version: env!("CARGO_PKG_VERSION").into(),
            generation: exported.generation,
            records: exported.counts.clone(),
            files: data_files(data_dir)?,
            images: exported.images.clone(),
            images_included: include_images,
        })
    }
}

/// Writes the archive of `data_dir` to `out`: the manifest, the `records_len` bytes of records, the data
/// directory's files, and the images' binds, each entry exactly as long as its header says (a file that
/// changes while it is copied fails the backup rather than damage it).
pub fn write_archive(
    data_dir: &Path,
    manifest: &Manifest,
    records: impl Read,
    records_len: u64,
    out: impl Write,
) -> Result<(), ControllerError> {
    let failed = |what: &str, e: std::io::Error| ControllerError::Backup {
        path: data_dir.to_path_buf(),
        detail: format!("cannot write {what} into the archive: {e}"),
    };
    let at = manifest.created_at;
    let mut tar = tar::Builder::new(out);
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| ControllerError::StoreEncode { key: MANIFEST.into(), detail: e.to_string() })?;
    let mut header = entry_header(json.len() as u64, 0o600, at);
    tar.append_data(&mut header, MANIFEST, &json[..]).map_err(|e| failed(MANIFEST, e))?;
    let mut header = entry_header(records_len, 0o600, at);
    tar.append_data(&mut header, RECORDS, Exact::new(records, records_len)).map_err(|e| failed(RECORDS, e))?;
    for rel in &manifest.files {
        append_file(&mut tar, &data_dir.join(rel), &format!("{FILES}{rel}"), at).map_err(|e| failed(rel, e))?;
    }
    if manifest.images_included {
        for sha in &manifest.images {
            let path = data_dir.join("images").join(format!("{sha}.bind"));
            append_file(&mut tar, &path, &format!("{IMAGES}{sha}.bind"), at)
                .map_err(|e| failed(&format!("the bind of image {sha} (named in the store)"), e))?;
        }
    }
    tar.into_inner().and_then(|mut w| w.flush()).map_err(|e| failed("the archive's end", e))?;
    Ok(())
}

fn entry_header(size: u64, mode: u32, created_at: Millis) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(created_at / 1000);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append_file(tar: &mut tar::Builder<impl Write>, path: &Path, name: &str, created_at: Millis) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    #[cfg(unix)]
    let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
    #[cfg(not(unix))]
    let mode = 0o600;
    let mut header = entry_header(meta.len(), mode, created_at);
    tar.append_data(&mut header, name, Exact::new(file, meta.len()))
}

/// A reader of exactly `len` bytes: fewer is an error (a file cut while it was read), more are not read.
struct Exact<R> {
    inner: std::io::Take<R>,
    len: u64,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, len: u64) -> Exact<R> {
        Exact { inner: inner.take(len), len }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.inner.limit() > 0 {
            let read = self.len - self.inner.limit();
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("it ended after {read} of its {} bytes while it was copied", self.len),
            ));
        }
        Ok(n)
    }
}

/// The data directory's files, but for the store, the images and backups in the making: every file (a
/// symbolic link is followed), as a path inside it with `/` between its parts, in order.
fn data_files(data_dir: &Path) -> Result<Vec<String>, ControllerError> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) -> Result<(), ControllerError> {
        let entries = std::fs::read_dir(dir).map_err(crate::error::io_err("read", dir))?;
        for entry in entries {
            let entry = entry.map_err(crate::error::io_err("read", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefix.is_empty() && NOT_FILES.contains(&name.as_str()) {
                continue;
            }
            let path = entry.path();
            // Followed, so that a `tls/` kept elsewhere and linked in is backed up too.
            let meta = std::fs::metadata(&path).map_err(crate::error::io_err("read", &path))?;
            if meta.is_dir() && depth < 8 {
                walk(&path, &format!("{prefix}{name}/"), depth + 1, out)?;
            } else if meta.is_file() {
                out.push(format!("{prefix}{name}"));
            } else {
                return Err(ControllerError::Backup {
                    path,
                    detail: "is neither a file nor a directory (or nested too deep): move it out of the data \
                             directory, or it would be missing from the backup"
                        .into(),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(data_dir, "", 0, &mut out)?;
    out.sort();
    Ok(out)
}

/// A directory (and its parents) only its owner may enter: backups and restores hold the controller's keys.
fn private_dir(dir: &Path) -> Result<(), ControllerError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(crate::error::io_err("create", dir))
}

/// Reads the manifest from the archive's first entry.
fn read_manifest(
    entry: &mut impl Read,
    refuse: &dyn Fn(String) -> ControllerError,
) -> Result<Manifest, ControllerError> {
    let mut json = Vec::new();
    entry.take(MANIFEST_LIMIT).read_to_end(&mut json).map_err(|e| refuse(format!("{MANIFEST}: {e}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| refuse(format!("{MANIFEST} is not readable ({e})")))?;
    if manifest.format != FORMAT {
        return Err(refuse(format!(
            "is in format {:?}, and this bindwave reads {FORMAT}: restore it with the bindwave {} that wrote it",
            manifest.format, manifest.controller_version
        )));
    }
    Ok(manifest)
}

/// The manifest of the archive at `path`, after reading the whole archive through: a file cut short or not a
/// bindwave backup is an error.
pub fn inspect(path: &Path) -> Result<Manifest, ControllerError> {
    let refuse = |detail: String| ControllerError::Backup { path: path.to_path_buf(), detail };
    let not_one = |why: String| refuse(format!("is not a bindwave backup ({why})"));
    let file = std::fs::File::open(path).map_err(crate::error::io_err("open", path))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    let mut entries = tar.entries().map_err(|e| not_one(format!("not a tar archive: {e}")))?;
    let mut first = entries
        .next()
        .ok_or_else(|| not_one("it is empty".into()))?
        .map_err(|e| not_one(format!("not a tar archive: {e}")))?;
    if first.path().map(|p| p.to_string_lossy() != MANIFEST).unwrap_or(true) {
        return Err(not_one(format!("its first entry is not {MANIFEST}")));
    }
    let manifest = read_manifest(&mut first, &refuse)?;
    drop(first);
    let mut n = 1;
    for entry in entries {
        let mut entry = entry.map_err(|e| refuse(format!("is damaged or cut short after {n} entries ({e})")))?;
        let size = entry.size();
        let read = std::io::copy(&mut entry, &mut std::io::sink())
            .map_err(|e| refuse(format!("is cut short in entry {} ({e})", n + 1)))?;
        if read != size {
            return Err(refuse(format!("is cut short: entry {} holds {read} of its {size} bytes", n + 1)));
        }
        n += 1;
    }
    let images = if manifest.images_included { manifest.images.len() } else { 0 };
    let expected = 2 + manifest.files.len() + images;
    if n != expected {
        return Err(refuse(format!("holds {n} entries, not the {expected} its manifest names: it is cut short")));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_reader_refuses_a_short_source() {
        let mut out = Vec::new();
        Exact::new(&b"abcdef"[..], 4).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");
        let e = Exact::new(&b"ab"[..], 4).read_to_end(&mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("after 2 of its 4 bytes"), "{e}");
    }
}
