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
//! A backup holds the controller's secrets: keep it as the data directory itself is kept. `restore` writes a
//! new data directory, and only a whole one: it builds beside it and renames it into place at the end.

use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Millis;
use crate::store::backup::{Counts, Exported};
use crate::store::Store;
use crate::ControllerError;

/// The format this controller writes and reads.
pub const FORMAT: &str = "bindwave-backup/1";
/// The archive's entries.
const MANIFEST: &str = "bindwave-backup.json";
const RECORDS: &str = "records.jsonl";
const FILES: &str = "files/";
const IMAGES: &str = "images/";
/// Where a backup is put together, inside the data directory (never itself backed up).
pub const WORK_DIR: &str = ".backup";

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

/// Writes the archive of `data_dir` to `out`: the manifest, the records the core exported into `records`,
/// the data directory's files, and the images' binds.
pub fn write_archive(
    data_dir: &Path,
    records: &Path,
    exported: &Exported,
    include_images: bool,
    created_at: Millis,
    out: impl Write,
) -> Result<Manifest, ControllerError> {
    let files = data_files(data_dir)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at,
        controller_version: env!("CARGO_PKG_VERSION").into(),
        generation: exported.generation,
        records: exported.counts.clone(),
        files: files.clone(),
        images: exported.images.clone(),
        images_included: include_images,
    };
    let failed = |e: std::io::Error| ControllerError::Backup {
        path: data_dir.to_path_buf(),
        detail: format!("cannot write the archive: {e}"),
    };
    let mut tar = tar::Builder::new(out);
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ControllerError::StoreEncode { key: MANIFEST.into(), detail: e.to_string() })?;
    let mut header = entry_header(json.len() as u64, 0o600, created_at);
    tar.append_data(&mut header, MANIFEST, &json[..]).map_err(failed)?;
    append_file(&mut tar, records, RECORDS, created_at).map_err(failed)?;
    for rel in &files {
        append_file(&mut tar, &data_dir.join(rel), &format!("{FILES}{rel}"), created_at).map_err(failed)?;
    }
    if include_images {
        for sha in &exported.images {
            let path = data_dir.join("images").join(format!("{sha}.bind"));
            append_file(&mut tar, &path, &format!("{IMAGES}{sha}.bind"), created_at).map_err(|e| {
                ControllerError::Backup {
                    path: path.clone(),
                    detail: format!("cannot copy the image's bind ({e}); it is named in the store"),
                }
            })?;
        }
    }
    tar.into_inner().and_then(|mut w| w.flush()).map_err(failed)?;
    Ok(manifest)
}

/// Takes a backup of the live controller behind `core` into a file of its own in the data directory's
/// [`WORK_DIR`]; returns the file, opened, and already unlinked (so nothing is left behind however the download
/// ends), its size and its manifest.
pub async fn take(
    core: &crate::handle::Core,
    include_images: bool,
) -> Result<(std::fs::File, u64, Manifest), ControllerError> {
    let work = core.data_dir.join(WORK_DIR);
    std::fs::create_dir_all(&work).map_err(crate::error::io_err("create", &work))?;
    let stem = format!("{}-{}", crate::clock::now_millis(), rand::random::<u32>());
    let records = work.join(format!("{stem}.records.jsonl"));
    let exported = core.export(records.clone()).await;
    let archive = work.join(format!("{stem}.tar"));
    let data_dir = core.data_dir.clone();
    let made = tokio::task::spawn_blocking({
        let (records, archive) = (records.clone(), archive.clone());
        move || -> Result<_, ControllerError> {
            let exported = exported?;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&archive)
                .map_err(crate::error::io_err("create", &archive))?;
            let mut out = std::io::BufWriter::new(file);
            let manifest =
                write_archive(&data_dir, &records, &exported, include_images, crate::clock::now_millis(), &mut out)?;
            let mut file = out.into_inner().map_err(|e| crate::error::io_err("write", &archive)(e.into_error()))?;
            let size = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))
                .and_then(|_| file.metadata().map(|m| m.len()))
                .map_err(crate::error::io_err("read back", &archive))?;
            Ok((file, size, manifest))
        }
    })
    .await
    .map_err(|e| ControllerError::CoreStopped(format!("the backup's writer: {e}")));
    let _ = std::fs::remove_file(&records);
    // Unlinked at once: the open file is all that is left of it, and it goes when the download ends.
    let _ = std::fs::remove_file(&archive);
    made?
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
    tar.append_data(&mut header, name, file)
}

/// The data directory's files, but for the store, the images and backups in the making: every regular file,
/// as a path inside it with `/` between its parts, in order.
fn data_files(data_dir: &Path) -> Result<Vec<String>, ControllerError> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), ControllerError> {
        let entries = std::fs::read_dir(dir).map_err(crate::error::io_err("read", dir))?;
        for entry in entries {
            let entry = entry.map_err(crate::error::io_err("read", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().map_err(crate::error::io_err("read", &entry.path()))?;
            if prefix.is_empty() && ["store", "images", WORK_DIR].contains(&name.as_str()) {
                continue;
            }
            if kind.is_dir() {
                walk(&entry.path(), &format!("{prefix}{name}/"), out)?;
            } else if kind.is_file() {
                out.push(format!("{prefix}{name}"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(data_dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub manifest: Manifest,
    pub records: Counts,
    pub files: usize,
    pub images: usize,
}

/// Writes the data directory `data_dir` (which must not exist, or be empty) from the archive `archive`. It is
/// built beside `data_dir` and renamed into place whole: a refused or interrupted restore leaves nothing there.
pub async fn restore(archive: &Path, data_dir: &Path) -> Result<Restored, ControllerError> {
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ControllerError::Backup {
            path: data_dir.to_path_buf(),
            detail: "the data directory to restore into is not empty: restore writes a new one (move this one \
                     aside, or give another with --data-dir)"
                .into(),
        });
    }
    let name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let staging = data_dir.with_file_name(format!(".{name}.restoring"));
    if staging.exists() {
        // What an interrupted restore left: ours alone, and never a data directory.
        std::fs::remove_dir_all(&staging).map_err(crate::error::io_err("remove", &staging))?;
    }
    match unpack(archive, &staging).await {
        Ok((manifest, records, files, images)) => {
            if data_dir.exists() {
                std::fs::remove_dir(data_dir).map_err(crate::error::io_err("replace the empty directory", data_dir))?;
            }
            std::fs::rename(&staging, data_dir)
                .map_err(crate::error::io_err("rename the restored directory to", data_dir))?;
            Ok(Restored { data_dir: data_dir.to_path_buf(), records, files, images, manifest })
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Unpacks the archive into `staging`: its store, its files and its images, each checked.
async fn unpack(archive: &Path, staging: &Path) -> Result<(Manifest, Counts, usize, usize), ControllerError> {
    let refuse = |detail: String| ControllerError::Backup { path: archive.to_path_buf(), detail };
    std::fs::create_dir_all(staging.join("images")).map_err(crate::error::io_err("create", staging))?;
    let file = std::fs::File::open(archive).map_err(crate::error::io_err("open", archive))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    let not_one = |why: String| refuse(format!("is not a bindwave backup ({why})"));
    let entries = tar.entries().map_err(|e| not_one(format!("not a tar archive: {e}")))?;
    let (mut manifest, mut records, mut files, mut images) = (None::<Manifest>, None, 0usize, Vec::new());
    let store = Store::open(&staging.join("store"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| match manifest {
            None => not_one(format!("not a tar archive: {e}")),
            Some(_) => refuse(format!("is damaged or cut short ({e})")),
        })?;
        let path = entry.path().map_err(|e| refuse(format!("holds an unreadable name ({e})")))?.into_owned();
        let name = path.to_string_lossy().replace('\\', "/");
        if manifest.is_none() {
            if name != MANIFEST {
                return Err(not_one(format!("its first entry is {name:?}, not {MANIFEST}")));
            }
            let mut json = Vec::new();
            entry.by_ref().take(1 << 20).read_to_end(&mut json).map_err(|e| refuse(format!("{MANIFEST}: {e}")))?;
            let m: Manifest =
                serde_json::from_slice(&json).map_err(|e| refuse(format!("{MANIFEST} is not readable ({e})")))?;
            if m.format != FORMAT {
                return Err(refuse(format!(
                    "is in format {:?}, and this bindwave reads {FORMAT}: restore it with the bindwave {} that \
                     wrote it",
                    m.format, m.controller_version
                )));
            }
            manifest = Some(m);
        } else if name == RECORDS {
            let counts = store.import(BufReader::new(&mut entry)).await.map_err(|e| match e {
                ControllerError::BadRequest(detail) => refuse(detail),
                other => other,
            })?;
            records = Some(counts);
        } else if let Some(rel) = name.strip_prefix(FILES) {
            let dest = staging.join(inside(rel).ok_or_else(|| refuse(format!("names a file outside: {name:?}")))?);
            let mode = entry.header().mode().unwrap_or(0o600) & 0o777;
            let size = entry.size();
            write_entry(&mut entry, &dest, size, mode, None).map_err(|detail| refuse(format!("{name}: {detail}")))?;
            files += 1;
        } else if let Some(file) = name.strip_prefix(IMAGES) {
            let sha = file
                .strip_suffix(".bind")
                .filter(|s| crate::model::ImageId::parse(s).is_some())
                .ok_or_else(|| refuse(format!("holds {name:?}, not an image (<sha256>.bind)")))?;
            let dest = staging.join("images").join(file);
            let size = entry.size();
            write_entry(&mut entry, &dest, size, 0o644, Some(sha))
                .map_err(|detail| refuse(format!("{name}: {detail}")))?;
            images.push(sha.to_string());
        } else {
            return Err(refuse(format!("holds {name:?}, which no bindwave backup holds")));
        }
    }
    let manifest = manifest.ok_or_else(|| not_one("it is empty".into()))?;
    let records = records.ok_or_else(|| refuse(format!("has no {RECORDS}: it is cut short")))?;
    if records != manifest.records {
        return Err(refuse(format!(
            "holds other records than its manifest counts ({records:?}, not {:?}): it is damaged",
            manifest.records
        )));
    }
    if files != manifest.files.len() {
        return Err(refuse(format!("holds {files} of its {} files: it is cut short", manifest.files.len())));
    }
    if manifest.images_included {
        let missing: Vec<&String> = manifest.images.iter().filter(|s| !images.contains(s)).collect();
        if !missing.is_empty() {
            return Err(refuse(format!("lacks the binds of images {missing:?}: it is cut short")));
        }
    }
    store.mark_now();
    Ok((manifest, records, files, images.len()))
}

/// The manifest of the archive at `path`, after reading the whole archive through: a file cut short or not a
/// bindwave backup is an error.
pub fn inspect(path: &Path) -> Result<Manifest, ControllerError> {
    let refuse = |detail: String| ControllerError::Backup { path: path.to_path_buf(), detail };
    let file = std::fs::File::open(path).map_err(crate::error::io_err("open", path))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    let mut entries = tar.entries().map_err(|e| refuse(format!("is not a tar archive ({e})")))?;
    let mut first =
        entries.next().ok_or_else(|| refuse("is empty".into()))?.map_err(|e| refuse(format!("is damaged ({e})")))?;
    if first.path().map(|p| p.to_string_lossy() != MANIFEST).unwrap_or(true) {
        return Err(refuse(format!("is not a bindwave backup (its first entry is not {MANIFEST})")));
    }
    let mut json = Vec::new();
    first.by_ref().take(1 << 20).read_to_end(&mut json).map_err(|e| refuse(format!("{MANIFEST}: {e}")))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| refuse(format!("{MANIFEST} is not readable ({e})")))?;
    drop(first);
    let mut n = 1;
    for entry in entries {
        let mut entry = entry.map_err(|e| refuse(format!("is damaged or cut short after {n} entries ({e})")))?;
        std::io::copy(&mut entry, &mut std::io::sink())
            .map_err(|e| refuse(format!("is cut short in entry {} ({e})", n + 1)))?;
        n += 1;
    }
    let images = if manifest.images_included { manifest.images.len() } else { 0 };
    let expected = 2 + manifest.files.len() + images;
    if n != expected {
        return Err(refuse(format!("holds {n} entries, not the {expected} its manifest names: it is cut short")));
    }
    Ok(manifest)
}

/// `rel` as a path inside a directory: plain names only, never `..`, a root or a prefix.
fn inside(rel: &str) -> Option<PathBuf> {
    let path = Path::new(rel);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !rel.is_empty()).then(|| path.to_path_buf())
}

/// Writes one entry of `size` bytes to `dest` with `mode`, checking its SHA-256 against `sha` if given.
fn write_entry(entry: &mut impl Read, dest: &Path, size: u64, mode: u32, sha: Option<&str>) -> Result<(), String> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut out = opts.open(dest).map_err(|e| e.to_string())?;
    let (mut hasher, mut written) = (Sha256::new(), 0u64);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = entry.read(&mut buf).map_err(|e| format!("cut short ({e})"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        written += n as u64;
    }
    if written != size {
        return Err(format!("cut short: {written} of its {size} bytes are in the archive"));
    }
    out.sync_all().map_err(|e| e.to_string())?;
    if let Some(sha) = sha {
        let got = hex::encode(hasher.finalize());
        if got != sha {
            return Err(format!("its bytes hash to {got}: the bind is damaged"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_inside_are_taken() {
        assert_eq!(inside("tls/ca.pem"), Some(PathBuf::from("tls/ca.pem")));
        for bad in ["", "../x", "/etc/passwd", "tls/../../x"] {
            assert_eq!(inside(bad), None, "{bad:?}");
        }
    }
}
