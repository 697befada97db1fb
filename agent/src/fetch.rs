//! Downloads a bind over HTTP(S), streaming: the header is judged as soon as it has arrived, the payload goes
//! straight to a file beside the slots, and nothing larger than one chunk and the header is held in memory.

use std::path::{Path, PathBuf};

use bindwave_proto::compat::{decide, Decision};
use bindwave_proto::wire::{JobState, Reason, UpdateCommand};
use bindwave_proto::{BindHeader, DeviceProfile};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::chain;

use bindwave_proto::verify::{Expected, Verifier};

pub(crate) enum Fetched {
    /// Downloaded, verified, and for this phone (or overridden): ready to install.
    Verified {
        header: BindHeader,
        payload: PathBuf,
        override_used: bool,
    },
    /// The header says this bind is not for this phone; the rest was not downloaded.
    Rejected(Reason),
    Failed(Reason),
}

pub(crate) async fn fetch(
    http: &reqwest::Client,
    cmd: &UpdateCommand,
    profile: &DeviceProfile,
    download_dir: &Path,
    progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
) -> Fetched {
    let path = download_dir.join(format!("{}.payload", file_safe(&cmd.job_id)));
    let result = stream(http, cmd, profile, &path, progress).await;
    if !matches!(result, Fetched::Verified { .. }) {
        let _ = tokio::fs::remove_file(&path).await;
    }
    result
}

async fn stream(
    http: &reqwest::Client,
    cmd: &UpdateCommand,
    profile: &DeviceProfile,
    path: &Path,
    progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
) -> Fetched {
    let failed = |detail: String| Fetched::Failed(Reason::DownloadFailed { detail });
    if !(cmd.url.starts_with("http://") || cmd.url.starts_with("https://")) {
        return Fetched::Failed(Reason::InvalidCommand {
            detail: format!("unsupported url {:?}: use http:// or https://", cmd.url),
        });
    }
    let response = match http.get(&cmd.url).send().await {
        Ok(r) => r,
        Err(e) => return failed(format!("GET {}: {}", cmd.url, chain(&e))),
    };
    if !response.status().is_success() {
        return failed(format!("GET {}: HTTP {}", cmd.url, response.status()));
    }
    let mut file = match tokio::fs::File::create(path).await {
        Ok(f) => f,
        Err(e) => return Fetched::Failed(Reason::InstallFailed { detail: format!("create {}: {e}", path.display()) }),
    };
    let mut verifier = Verifier::new(Expected { size: Some(cmd.size), sha256: Some(cmd.sha256.clone()) });
    let mut override_used = false;
    let mut last_percent = 0u8;
    progress(JobState::Downloading, Some(0));
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return failed(format!("reading the body of {}: {}", cmd.url, chain(&e))),
        };
        let fed = match verifier.feed(&chunk) {
            Ok(fed) => fed,
            Err(reason) => return Fetched::Failed(reason),
        };
        if let Some(header) = &fed.header {
            match decide(header, profile, cmd.override_compat) {
                Decision::Reject { rejection, .. } => return Fetched::Rejected(rejection.into()),
                d => override_used = d.override_used(),
            }
        }
        if !fed.payload.is_empty() {
            if let Err(e) = file.write_all(fed.payload).await {
                return Fetched::Failed(Reason::InstallFailed { detail: format!("write {}: {e}", path.display()) });
            }
        }
        let percent = (verifier.received().saturating_mul(100) / cmd.size.max(1)).min(100) as u8;
        if percent >= last_percent.saturating_add(10) && percent < 100 {
            last_percent = percent - percent % 10;
            progress(JobState::Downloading, Some(last_percent));
        }
    }
    progress(JobState::Verifying, None);
    if let Err(e) = file.flush().await {
        return Fetched::Failed(Reason::InstallFailed { detail: format!("write {}: {e}", path.display()) });
    }
    drop(file);
    match verifier.finish() {
        Ok(v) => Fetched::Verified { header: v.header, payload: path.to_path_buf(), override_used },
        Err(reason) => Fetched::Failed(reason),
    }
}

/// Job ids come from the wire: keep only characters that are safe in a file name.
fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(100).collect()
}
