//! Taking a backup of the live controller: the core copies its store's records into a file between two
//! batches, and the archive is written into the HTTP response as it is made, so that it is never staged on the
//! controller's disk (a backup must not fill the disk the store writes to).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use axum::body::Body;

use super::{private_dir, write_archive, Manifest, WORK_DIR};
use crate::handle::Core;
use crate::ControllerError;

/// Bytes per chunk of the response.
const CHUNK: usize = 256 * 1024;

/// A backup of the controller behind `core`: its manifest, and the archive as a response body that is written
/// as it is sent. A failure part-way (a bind that vanished, a client gone) breaks the response off, so that
/// the client never takes a cut archive for a whole one.
pub async fn take(core: &Core, include_images: bool) -> Result<(Manifest, Body), ControllerError> {
    let work = core.data_dir.join(WORK_DIR);
    private_dir(&work)?;
    let path = work.join(format!("{}-{}.records.jsonl", crate::clock::now_millis(), rand::random::<u32>()));
    let file = private_file(&path)?;
    // Unlinked at once: the open file is all there is of it, however the request ends.
    let _ = std::fs::remove_file(&path);
    let (exported, mut file) = core.export(file).await?;
    let len = file
        .seek(SeekFrom::End(0))
        .and_then(|len| file.seek(SeekFrom::Start(0)).map(|_| len))
        .map_err(crate::error::io_err("read back", &path))?;
    let manifest = Manifest::of(&core.data_dir, &exported, include_images, crate::clock::now_millis())?;
    if include_images {
        // A bind the store names but the disk lacks is an error before the answer starts, not a cut archive.
        for sha in &manifest.images {
            let bind = core.images_dir.join(format!("{sha}.bind"));
            if !bind.is_file() {
                return Err(ControllerError::Backup {
                    path: bind,
                    detail: "the store names this image, but its bind is missing: add the image again, or take the \
                             backup with --without-images"
                        .into(),
                });
            }
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let (data_dir, sent) = (core.data_dir.clone(), manifest.clone());
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        if let Err(e) = write_archive(&data_dir, &sent, std::io::BufReader::new(file), len, &mut out) {
            let e = crate::error::chain(&e);
            tracing::warn!(error = %e, "the backup broke off");
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok((manifest, Body::from_stream(stream)))
}

/// The archive's bytes, handed to the response a chunk at a time.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}

/// A new file only its owner may read, open for reading and writing.
fn private_file(path: &Path) -> Result<std::fs::File, ControllerError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).map_err(crate::error::io_err("create", path))
}
