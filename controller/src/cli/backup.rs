//! `bindwave backup` and `bindwave restore`: a consistent copy of a live controller, and a new data
//! directory made from one.

use std::path::Path;

use super::output::{emit, Format};
use crate::client::ApiClient;
use crate::ControllerError;

/// Downloads a backup into `out`, reads it back through, and says what it holds. It is written to
/// `<out>.partial` and renamed to `out` only once it has read back whole: `out` is a whole backup or untouched.
pub(super) async fn backup(
    api: ApiClient,
    out: &Path,
    without_images: bool,
    output: Format,
) -> Result<(), ControllerError> {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    let partial = out.with_file_name(format!("{name}.partial"));
    let taken = async {
        let bytes = api.backup(&partial, without_images).await?;
        let manifest = crate::backup::inspect(&partial)?;
        std::fs::rename(&partial, out).map_err(crate::error::io_err("rename into place", out))?;
        Ok::<_, ControllerError>((bytes, manifest))
    }
    .await;
    let (bytes, manifest) = taken.inspect_err(|_| drop(std::fs::remove_file(&partial)))?;
    let summary = serde_json::json!({ "file": out, "bytes": bytes, "manifest": manifest });
    emit(&summary, output, |_| {
        println!("wrote {} ({})", out.display(), size(bytes));
        println!("  records: {}", counts(&manifest.records));
        println!("  files:   {}", manifest.files.join(", "));
        if manifest.images_included {
            println!("  images:  {} bind(s)", manifest.images.len());
        } else {
            println!(
                "  images:  left out ({} named; copy their binds into <data-dir>/images/ beside a restore)",
                manifest.images.len()
            );
        }
        println!("it holds the controller's keys: keep it as safe as the data directory");
    })
}

/// Writes a new data directory from a backup.
pub(super) async fn restore(file: &Path, data_dir: &Path, output: Format) -> Result<(), ControllerError> {
    let restored = crate::backup::restore(file, data_dir).await?;
    emit(&restored, output, |r| {
        println!("restored {} into {}", file.display(), r.data_dir.display());
        println!("  records: {}", counts(&r.records));
        println!("  files:   {}, images: {}", r.files, r.images);
        if r.images_left_out > 0 {
            println!(
                "  {} image(s) were left out of the backup: copy their binds into {}",
                r.images_left_out,
                r.data_dir.join("images").display()
            );
        }
        println!("start it with: bindwave serve --data-dir {}", r.data_dir.display());
        println!("phones come back online as they reconnect; rollouts carry on where the backup was taken");
    })
}

fn counts(counts: &crate::store::backup::Counts) -> String {
    counts.iter().map(|(tree, n)| format!("{n} {tree}")).collect::<Vec<_>>().join(", ")
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} bytes"),
    }
}
