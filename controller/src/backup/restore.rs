//! `bindwave restore`: a new data directory from a backup, whole or not at all. It is built beside the given
//! directory (which must be new, or empty), every record checked as the controller reads it at start-up, every
//! file against its size and every bind against its hash and the manifest, and renamed into place at the end.

use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{private_dir, read_manifest, Manifest, FILES, IMAGES, MANIFEST, NOT_FILES, RECORDS};
use crate::store::backup::Counts;
use crate::store::Store;
use crate::ControllerError;

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub manifest: Manifest,
    pub records: Counts,
    pub files: usize,
    pub images: usize,
    /// Images the manifest names whose binds the backup left out (`--without-images`).
    pub images_left_out: usize,
}

/// Writes the data directory `data_dir` (which must not exist, or be empty) from the archive `archive`. A
/// directory that exists keeps its mode and (for a restore run as root) its owner, which the restored files
/// take too.
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
    let existing = std::fs::metadata(data_dir).ok();
    let done = unpack(archive, &staging).await.and_then(|restored| {
        if let Some(meta) = &existing {
            take_ownership(&staging, meta)?;
            std::fs::remove_dir(data_dir).map_err(crate::error::io_err("replace the empty directory", data_dir))?;
        }
        std::fs::rename(&staging, data_dir)
            .map_err(crate::error::io_err("rename the restored directory to", data_dir))?;
        Ok(restored)
    });
    match done {
        Ok((manifest, records, files, images)) => {
            let left_out = if manifest.images_included { 0 } else { manifest.images.len() };
            Ok(Restored {
                data_dir: data_dir.to_path_buf(),
                records,
                files,
                images,
                images_left_out: left_out,
                manifest,
            })
        }
        Err(e) => {
            remove_staging(&staging);
            Err(e)
        }
    }
}

/// Removes what a refused restore built. sled's background thread may still write a file into the store a
/// moment after its last handle is dropped, so the removal is tried again for up to a second.
fn remove_staging(staging: &Path) {
    for _ in 0..20 {
        if std::fs::remove_dir_all(staging).is_ok() || !staging.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    tracing::warn!(path = %staging.display(), "cannot remove what the refused restore wrote: remove it by hand");
}

/// Gives `staging` and everything in it the mode and owner of the directory it replaces.
fn take_ownership(staging: &Path, of: &std::fs::Metadata) -> Result<(), ControllerError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::set_permissions(staging, of.permissions())
            .map_err(crate::error::io_err("set the mode of", staging))?;
        // Only root can give files away; anyone else restores as the owner they are.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            fn chown_all(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
                std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
                if std::fs::symlink_metadata(path)?.is_dir() {
                    for entry in std::fs::read_dir(path)? {
                        chown_all(&entry?.path(), uid, gid)?;
                    }
                }
                Ok(())
            }
            chown_all(staging, of.uid(), of.gid())
                .map_err(crate::error::io_err("give the owner's files to", staging))?;
        }
    }
    #[cfg(not(unix))]
    let _ = (staging, of);
    Ok(())
}

/// Unpacks the archive into `staging`: its store, its files and its images, each checked.
async fn unpack(archive: &Path, staging: &Path) -> Result<(Manifest, Counts, usize, usize), ControllerError> {
    let refuse = |detail: String| ControllerError::Backup { path: archive.to_path_buf(), detail };
    private_dir(staging)?;
    private_dir(&staging.join("images"))?;
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
        let Some(m) = &manifest else {
            if name != MANIFEST {
                return Err(not_one(format!("its first entry is {name:?}, not {MANIFEST}")));
            }
            manifest = Some(read_manifest(&mut entry, &refuse)?);
            continue;
        };
        if name == RECORDS {
            let counts = store.import(BufReader::new(&mut entry)).await.map_err(|e| match e {
                ControllerError::BadRequest(detail) => refuse(detail),
                other => other,
            })?;
            records = Some(counts);
        } else if let Some(rel) = name.strip_prefix(FILES) {
            let first = rel.split('/').next().unwrap_or("");
            let dest = inside(rel)
                .filter(|_| !NOT_FILES.contains(&first) && m.files.iter().any(|f| f == rel))
                .ok_or_else(|| {
                    refuse(format!("holds {name:?}, which is not one of the data directory's files its manifest names"))
                })?;
            let mode = entry.header().mode().unwrap_or(0o600) & 0o777;
            let size = entry.size();
            write_entry(&mut entry, &staging.join(dest), size, mode, None)
                .map_err(|detail| refuse(format!("{name}: {detail}")))?;
            files += 1;
        } else if let Some(file) = name.strip_prefix(IMAGES) {
            let sha = file
                .strip_suffix(".bind")
                .filter(|s| crate::model::ImageId::parse(s).is_some() && m.images.iter().any(|i| i == s))
                .ok_or_else(|| refuse(format!("holds {name:?}, which is not the bind of an image its manifest names")))?
                .to_string();
            let size = entry.size();
            write_entry(&mut entry, &staging.join("images").join(file), size, 0o644, Some(&sha))
                .map_err(|detail| refuse(format!("{name}: {detail}")))?;
            images.push(sha);
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

    /// A hand-made archive: the manifest `manifest` (with counts of no records), the empty records, and
    /// `entries` (name, bytes).
    fn crafted(dir: &Path, files: &[&str], images: &[&str], entries: &[(&str, &[u8])]) -> PathBuf {
        let counts: Counts = crate::store::backup::TREES.iter().map(|t| (t.to_string(), 0)).collect();
        let manifest = Manifest {
            format: super::super::FORMAT.into(),
            created_at: 0,
            controller_version: "test".into(),
            generation: 0,
            records: counts,
            files: files.iter().map(ToString::to_string).collect(),
            images: images.iter().map(ToString::to_string).collect(),
            images_included: true,
        };
        let path = dir.join("crafted.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let json = serde_json::to_vec(&manifest).unwrap();
        for (name, bytes) in [(MANIFEST, &json[..]), (RECORDS, &b""[..])].into_iter().chain(entries.iter().copied()) {
            let mut header = super::super::entry_header(bytes.len() as u64, 0o600, 0);
            tar.append_data(&mut header, name, bytes).unwrap();
        }
        tar.finish().unwrap();
        path
    }

    /// A file entry aimed at the store or the images, one the manifest does not name, and a bind the manifest
    /// does not name are each refused, and nothing is left behind.
    #[test]
    fn an_archive_that_writes_where_its_manifest_does_not_say_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sha = "a".repeat(64);
        let bind = format!("images/{sha}.bind");
        /// Files and images the manifest names, the one entry beside them, and what the refusal says.
        type Case<'a> = (&'a [&'a str], &'a [&'a str], (&'a str, &'a [u8]), &'a str);
        let cases: [Case; 4] = [
            (
                &["store/snap.0"],
                &[],
                ("files/store/snap.0", b"x"),
                "not one of the data directory's files its manifest names",
            ),
            (&[], &[], ("files/broker.secret", b"x"), "not one of the data directory's files its manifest names"),
            (&[], &[], (&bind, b"x"), "not the bind of an image its manifest names"),
            (&[], &[&sha], (&bind, b"x"), "the bind is damaged"),
        ];
        for (files, images, entry, words) in cases {
            let archive = crafted(dir.path(), files, images, &[entry]);
            let target = dir.path().join("restored");
            let e = rt.block_on(restore(&archive, &target)).unwrap_err().to_string();
            assert!(e.contains(words), "{words:?} not in: {e}");
            assert!(!target.exists() && !dir.path().join(".restored.restoring").exists(), "left behind: {e}");
        }
    }

    #[test]
    fn only_plain_paths_inside_are_taken() {
        assert_eq!(inside("tls/ca.pem"), Some(PathBuf::from("tls/ca.pem")));
        for bad in ["", "../x", "/etc/passwd", "tls/../../x"] {
            assert_eq!(inside(bad), None, "{bad:?}");
        }
    }
}
