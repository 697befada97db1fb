//! `bindwave image pack|inspect|add|list`.

use super::output::{byte_bar, emit, levels_text};
use super::ImageCmd;
use crate::client::ApiClient;
use crate::table::Table;
use crate::{images, ControllerError};

/// Runs an image command.
pub(super) async fn run(
    cmd: ImageCmd,
    api: &dyn Fn() -> Result<ApiClient, ControllerError>,
) -> Result<(), ControllerError> {
    match cmd {
        ImageCmd::Pack { payload, version, hardware_levels, output } => {
            let header = tokio::task::spawn_blocking(move || images::pack(&payload, version, hardware_levels, &output))
                .await
                .map_err(|e| ControllerError::BadRequest(e.to_string()))??;
            let levels = header.hardware_levels.as_ref().map_or("none (decided by software level)".to_string(), |l| {
                l.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            });
            println!(
                "packed {} ({} payload bytes), hardware levels: {levels}",
                header.software_version, header.payload_len
            );
            Ok(())
        }
        ImageCmd::Inspect { file, output } => {
            let i = tokio::task::spawn_blocking(move || images::inspect(&file))
                .await
                .map_err(|e| ControllerError::BadRequest(e.to_string()))??;
            emit(&i, output, |i| {
                let mut t = Table::new(["FIELD", "VALUE"]);
                t.row(["software_version".into(), i.software_version.to_string()]);
                t.row(["hardware_levels".into(), levels_text(i.hardware_levels.as_deref())]);
                t.row(["payload_length".into(), i.payload_len.to_string()]);
                t.row(["payload_sha256".into(), i.payload_sha256.clone()]);
                t.row(["file_size".into(), i.file_size.to_string()]);
                t.row(["file_sha256".into(), i.file_sha256.clone()]);
                t.row(["signed".into(), if i.signed { "yes" } else { "no" }.into()]);
                print!("{t}");
            })
        }
        ImageCmd::Add { file } => {
            // Check locally first: a clear error without an upload.
            let f = file.clone();
            tokio::task::spawn_blocking(move || images::inspect(&f))
                .await
                .map_err(|e| ControllerError::BadRequest(e.to_string()))??;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let bar = byte_bar(size, "upload");
            let progress = bar.clone();
            let image = api()?.add_image(&file, move |n| progress.inc(n)).await;
            bar.finish_and_clear();
            println!("{}", image?.sha256);
            Ok(())
        }
        ImageCmd::List { output } => {
            let list = api()?.images().await?;
            emit(&list, output, |list| {
                let mut t = Table::new(["SHA256", "VERSION", "HW LEVELS", "SIZE"]);
                for i in list {
                    t.row([
                        i.sha256.to_string(),
                        i.software_version.to_string(),
                        levels_text(i.hardware_levels.as_deref()),
                        i.size.to_string(),
                    ]);
                }
                print!("{t}");
            })
        }
    }
}
