//! Downloads a bind over HTTP(S) or FTP(S), streaming, resuming, and judging it early.
//!
//! - The header is judged as soon as it has arrived: a bind that is not signed by a key the phone pins, or is
//!   not for this phone, is abandoned after a few hundred bytes, and the rest is never downloaded. The
//!   signature is judged first, so nothing of an unsigned or forged header decides anything.
//! - The bytes go straight to `downloads/{job}.bind`; nothing larger than one chunk and the header is held in
//!   memory, whatever the bind's size.
//! - A dropped connection or a server error is retried with backoff, and the download resumes where it stopped
//!   with an HTTP Range request. `If-Range` carries the validator (ETag or Last-Modified) from the first
//!   response, so a file that changed on the server is downloaded from the start instead of being spliced.
//!   Over FTP and FTPS the resume is a `REST` before `RETR`.
//! - After an agent restart, the partial file is read back through the verifier (so its digests cover every
//!   byte) and the download resumes after it.
//! - A server whose file is not of the size the command names (its `Content-Length`, the total of its
//!   `Content-Range`, its FTP `SIZE`, or an FTP transfer that completed short) does not hold the bind the
//!   command names: the job fails at once, since asking again would fetch the same file.
//! - A file the phone cannot write or sync is `storage_failed`: the phone's disk, not the bind or the server.
//!
//! This file is the driver: the attempts, retried with the link's backoff, the read-back of a partial file, and
//! the verdict at the end. `http.rs` and `ftp.rs` are the two transfers; `download.rs` the state one download
//! carries and what each transfer does with a chunk; `types.rs` what a download is asked and gives back;
//! `files.rs` where it is kept.

mod download;
mod files;
mod ftp;
mod http;
mod types;

use std::path::Path;
use std::time::Duration;

use bindwave_proto::verify::Verifier;
use bindwave_proto::wire::{JobState, Reason, UpdateCommand};
use bindwave_proto::DeviceProfile;
use tokio::io::AsyncReadExt;

use crate::transport::Transport;
use crate::trust::ReleaseTrust;
use download::{percent, Download, State, Stop};
pub(crate) use files::{download_path, remove};
pub use types::RetryPolicy;
pub(crate) use types::{Counters, Credentials, Fetched};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch(
    transport: &Transport,
    credentials: &Credentials,
    cmd: &UpdateCommand,
    profile: &DeviceProfile,
    release: &ReleaseTrust,
    download_dir: &Path,
    policy: RetryPolicy,
    counters: &Counters,
    durability: crate::storage::Durability,
    progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
) -> Fetched {
    let file = download_path(download_dir, &cmd.job_id);
    let download =
        Download { transport, credentials, cmd, profile, release, file: &file, policy, counters, durability };
    let result = download.run(progress).await;
    if !matches!(result, Fetched::Verified { .. }) {
        remove(&file);
    }
    result
}

impl Download<'_> {
    async fn run(&self, progress: &mut (dyn FnMut(JobState, Option<u8>) + Send)) -> Fetched {
        if protocol(&self.cmd.url).is_none() {
            let detail = format!("unsupported url {:?}: use http://, https://, ftp:// or ftps://", self.cmd.url);
            return Fetched::Failed(Reason::InvalidCommand { detail });
        }
        let mut state = match self.read_back().await {
            Ok(s) => s,
            Err(done) => return done,
        };
        progress(JobState::Downloading, Some(percent(state.verifier.received(), self.cmd.size)));
        let mut restarted = false;
        let mut last = (String::new(), None);
        for attempt in 1..=self.policy.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(self.pause(attempt)).await;
            }
            let stop = self.attempt(&mut state, progress).await;
            match stop {
                Stop::Done(Fetched::Failed(Reason::ChecksumMismatch { .. } | Reason::SizeMismatch { .. }))
                    if state.resumed && !restarted && attempt < self.policy.attempts =>
                {
                    // A resumed file that does not add up (a tail written just before a power cut, say) is
                    // downloaded once more from the start before the job fails.
                    restarted = true;
                    state = self.start_over();
                    last = ("the resumed file did not match its digest; starting over".into(), None);
                }
                Stop::Done(outcome) => return outcome,
                Stop::Permanent { detail, status } => {
                    return Fetched::Failed(Reason::DownloadFailed { detail, status, attempts: attempt })
                }
                Stop::Retry { detail, status } => {
                    tracing::info!(job = %self.cmd.job_id, attempt, "download interrupted: {detail}; retrying");
                    last = (detail, status);
                }
            }
        }
        Fetched::Failed(Reason::DownloadFailed {
            detail: last.0,
            status: last.1,
            attempts: self.policy.attempts.max(1),
        })
    }

    /// The pause before `attempt` (2 for the first retry): the link's one backoff rule, with this policy's
    /// first pause and cap.
    fn pause(&self, attempt: u32) -> Duration {
        let backoff = bindwave_link::Backoff { first: self.policy.backoff, max: self.policy.max_backoff };
        backoff.pause(attempt.saturating_sub(2))
    }

    /// Reads a partial download left by an earlier run back through a fresh verifier.
    async fn read_back(&self) -> Result<State, Fetched> {
        let mut state = State::new(self.expected());
        let Ok(f) = std::fs::File::open(self.file) else { return Ok(state) };
        let mut f = tokio::fs::File::from_std(f);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => return Ok(self.start_over()),
            };
            match state.verifier.feed(&buf[..n]) {
                Ok(fed) => {
                    if let Some(header) = &fed.header {
                        if let Some(done) = self.judge(header, &mut state) {
                            return Err(done);
                        }
                    }
                }
                Err(_) => return Ok(self.start_over()),
            }
        }
        state.resumed = state.verifier.received() > 0;
        if state.resumed {
            tracing::info!(job = %self.cmd.job_id, bytes = state.verifier.received(), "resuming a partial download");
        }
        Ok(state)
    }

    async fn attempt(&self, state: &mut State, progress: &mut (dyn FnMut(JobState, Option<u8>) + Send)) -> Stop {
        let offset = state.verifier.received();
        if offset < self.cmd.size {
            self.counters.attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let stopped = match protocol(&self.cmd.url) {
                Some(Protocol::Ftp) => self.ftp_transfer(state, progress, offset).await,
                _ => self.http_transfer(state, progress, offset).await,
            };
            if let Some(stop) = stopped {
                return stop;
            }
            if state.verifier.received() < self.cmd.size {
                return Stop::Retry {
                    detail: format!(
                        "the connection ended after {} of {} bytes",
                        state.verifier.received(),
                        self.cmd.size
                    ),
                    status: None,
                };
            }
        }
        progress(JobState::Verifying, None);
        let verifier = std::mem::replace(&mut state.verifier, Verifier::new(self.expected()));
        match verifier.finish() {
            Ok(verified) => {
                if !state.judged {
                    if let Some(rejected) = self.judge(&verified.header, state) {
                        return Stop::Done(rejected);
                    }
                }
                Stop::Done(Fetched::Verified {
                    verified,
                    file: self.file.to_path_buf(),
                    override_used: state.override_used,
                })
            }
            Err(reason) => Stop::Done(Fetched::Failed(reason)),
        }
    }
}

/// How a URL is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `http://` and `https://`.
    Http,
    /// `ftp://` and `ftps://`.
    Ftp,
}

/// The protocol of a URL the agent can fetch; `None` for any other.
fn protocol(url: &str) -> Option<Protocol> {
    let (scheme, _) = url.split_once("://")?;
    match scheme {
        "http" | "https" => Some(Protocol::Http),
        "ftp" | "ftps" => Some(Protocol::Ftp),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_fetched_by_their_scheme() {
        assert_eq!(protocol("http://h/fw.bind"), Some(Protocol::Http));
        assert_eq!(protocol("https://h:8443/fw.bind"), Some(Protocol::Http));
        assert_eq!(protocol("ftp://h/fw.bind"), Some(Protocol::Ftp));
        assert_eq!(protocol("ftps://u:p@h:990/fw.bind"), Some(Protocol::Ftp));
        for other in ["fw.bind", "file:///tmp/fw.bind", "sftp://h/fw.bind", "HTTP://h/fw.bind", ""] {
            assert_eq!(protocol(other), None, "{other}");
        }
    }
}
