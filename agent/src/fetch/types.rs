//! What a download is asked to do and what it gives back: the public types of `fetch`.

use std::path::PathBuf;
use std::time::Duration;

use bindwave_proto::verify::Verified;
use bindwave_proto::wire::Reason;

/// How hard a download tries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first pause between attempts; it doubles each time (with jitter), up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 10, backoff: Duration::from_millis(500), max_backoff: Duration::from_secs(30) }
    }
}

pub(crate) enum Fetched {
    /// Downloaded whole, verified, and for this phone (or overridden): ready to install from `file`.
    Verified {
        verified: Verified,
        file: PathBuf,
        override_used: bool,
    },
    /// The header says this bind is not for this phone, or is not signed by a key it pins; the rest was not
    /// downloaded.
    Rejected(Reason),
    Failed(Reason),
}

/// User name and password for the server, from the default access settings.
pub(crate) type Credentials = Option<(String, Option<String>)>;

/// What a download has done so far; readable after the download ends or is abandoned.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(super) bytes: std::sync::atomic::AtomicU64,
    pub(super) attempts: std::sync::atomic::AtomicU32,
}

impl Counters {
    pub(crate) fn stats(&self, took: Duration) -> bindwave_proto::wire::DownloadStats {
        use std::sync::atomic::Ordering::Relaxed;
        bindwave_proto::wire::DownloadStats {
            bytes: self.bytes.load(Relaxed),
            millis: took.as_millis() as u64,
            attempts: self.attempts.load(Relaxed),
        }
    }
}
