//! One download in hand and what every transfer does with it: its state, why an attempt stopped, and each
//! chunk verified, judged, written and counted.

use std::path::Path;

use bindwave_proto::compat::{decide, Decision};
use bindwave_proto::verify::{Expected, Verifier};
use bindwave_proto::wire::{JobState, Reason, UpdateCommand};
use bindwave_proto::DeviceProfile;
use tokio::io::AsyncWriteExt;

use super::files::remove;
use super::types::{Counters, Credentials, Fetched, RetryPolicy};
use crate::storage::Durability;
use crate::transport::Transport;
use crate::trust::ReleaseTrust;

/// What one download fetches, from where and into which file, and how hard it tries.
pub(super) struct Download<'a> {
    pub(super) transport: &'a Transport,
    pub(super) credentials: &'a Credentials,
    pub(super) cmd: &'a UpdateCommand,
    pub(super) profile: &'a DeviceProfile,
    pub(super) release: &'a ReleaseTrust,
    pub(super) file: &'a Path,
    pub(super) policy: RetryPolicy,
    pub(super) counters: &'a Counters,
    /// Whether the file is synced before it is judged complete (always on a phone).
    pub(super) durability: Durability,
}

/// Why one attempt stopped.
pub(super) enum Stop {
    /// The outcome is known.
    Done(Fetched),
    /// Worth another attempt.
    Retry { detail: String, status: Option<u16> },
    /// Not worth another attempt (a 404, say).
    Permanent { detail: String, status: Option<u16> },
}

/// What the attempts so far have made of the file.
pub(super) struct State {
    pub(super) verifier: Verifier,
    pub(super) override_used: bool,
    pub(super) judged: bool,
    pub(super) last_percent: u8,
    /// Some of the file came from an earlier attempt or run.
    pub(super) resumed: bool,
}

impl State {
    pub(super) fn new(expected: Expected) -> State {
        State {
            verifier: Verifier::new(expected),
            override_used: false,
            judged: false,
            last_percent: 0,
            resumed: false,
        }
    }
}

impl Download<'_> {
    pub(super) fn expected(&self) -> Expected {
        Expected { size: Some(self.cmd.size), sha256: Some(self.cmd.sha256.clone()) }
    }

    pub(super) fn start_over(&self) -> State {
        remove(self.file);
        State::new(self.expected())
    }

    /// Judges a header: its signature against the pinned release keys, then the compatibility rule; `Some`
    /// when the bind is rejected.
    pub(super) fn judge(&self, header: &bindwave_proto::BindHeader, state: &mut State) -> Option<Fetched> {
        state.judged = true;
        match self.release.judge(header) {
            Ok(Some(signer)) => {
                tracing::info!(job = %self.cmd.job_id, key = %signer, "the bind is signed by a pinned key")
            }
            Ok(None) => tracing::warn!(job = %self.cmd.job_id, "the bind is unsigned; accepted in lab mode only"),
            Err(reason) => {
                tracing::warn!(job = %self.cmd.job_id, "rejected before its payload: {reason}");
                return Some(Fetched::Rejected(reason));
            }
        }
        match decide(header, self.profile, self.cmd.override_compat) {
            Decision::Reject { rejection, .. } => Some(Fetched::Rejected(rejection.into())),
            d => {
                state.override_used = d.override_used();
                None
            }
        }
    }

    pub(super) async fn open_partial(&self) -> Result<tokio::fs::File, Stop> {
        let opened = std::fs::OpenOptions::new().create(true).append(true).open(self.file);
        opened.map(tokio::fs::File::from_std).map_err(|e| self.storage_failed("open", &e))
    }

    /// Waits for every write to reach the file, then (on a phone) for the file to reach the flash. A tokio file
    /// writes in the background: without the flush, what reads the file next may find the last chunk missing.
    pub(super) async fn sync(&self, file: &mut tokio::fs::File) -> Option<Stop> {
        if let Err(e) = file.flush().await {
            return Some(self.storage_failed("write", &e));
        }
        if self.durability == Durability::NoSync {
            return None;
        }
        file.sync_all().await.err().map(|e| self.storage_failed("sync", &e))
    }

    /// The phone's own storage failed the download: no attempt more can help.
    pub(super) fn storage_failed(&self, what: &str, e: &std::io::Error) -> Stop {
        let detail = format!("{what} {}: {e}", self.file.display());
        Stop::Done(Fetched::Failed(Reason::StorageFailed { detail }))
    }

    /// A transfer broke off: worth another attempt, which resumes.
    pub(super) fn broken(&self, state: &State, why: &str) -> Stop {
        let detail =
            format!("reading {}: {why} (after {} of {} bytes)", self.cmd.url, state.verifier.received(), self.cmd.size);
        Stop::Retry { detail, status: None }
    }

    /// One chunk: verified, judged when it completes the header, written, and counted.
    pub(super) async fn take(
        &self,
        state: &mut State,
        file: &mut tokio::fs::File,
        chunk: &[u8],
        progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
    ) -> Option<Stop> {
        // Received, whatever the verdict: the chunk that completes a rejected header counts too.
        self.counters.bytes.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let fed = match state.verifier.feed(chunk) {
            Ok(fed) => fed,
            Err(reason) => return Some(Stop::Done(Fetched::Failed(reason))),
        };
        if let Some(header) = &fed.header {
            if let Some(rejected) = self.judge(header, state) {
                return Some(Stop::Done(rejected));
            }
        }
        if let Err(e) = file.write_all(chunk).await {
            return Some(self.storage_failed("write", &e));
        }
        let p = percent(state.verifier.received(), self.cmd.size);
        if p >= state.last_percent.saturating_add(10) && p < 100 {
            state.last_percent = p - p % 10;
            progress(JobState::Downloading, Some(state.last_percent));
        }
        None
    }
}

/// Says that the server's file of `on_server` bytes at `url` is not the bind of `size` bytes the command names.
pub(super) fn not_the_bind(url: &str, on_server: u64, size: u64) -> String {
    format!("the server's file {url} is {on_server} bytes, not the {size}-byte bind the command names")
}

pub(super) fn percent(received: u64, size: u64) -> u8 {
    (received.saturating_mul(100) / size.max(1)).min(100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_the_bind_is_named_with_both_sizes() {
        let detail = not_the_bind("http://h/fw.bind", 20, 8274);
        assert_eq!(detail, "the server's file http://h/fw.bind is 20 bytes, not the 8274-byte bind the command names");
    }

    #[test]
    fn progress_is_a_bounded_percentage() {
        assert_eq!(percent(0, 8274), 0);
        assert_eq!(percent(4137, 8274), 50);
        assert_eq!(percent(8274, 8274), 100);
        assert_eq!(percent(9000, 8274), 100, "never over 100");
        assert_eq!(percent(5, 0), 100, "an empty bind does not divide by zero");
    }
}
