//! Downloads a bind over HTTP(S) or FTP(S), streaming, resuming, and judging it early.
//!
//! - The header is judged as soon as it has arrived: a bind that is not for this phone is abandoned after a few
//!   hundred bytes, and the rest is never downloaded.
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

use std::path::{Path, PathBuf};
use std::time::Duration;

use bindwave_proto::compat::{decide, Decision};
use bindwave_proto::verify::{Expected, Verified, Verifier};
use bindwave_proto::wire::{JobState, Reason, UpdateCommand};
use bindwave_proto::DeviceProfile;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::chain;
use crate::transport::Transport;

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
    /// The header says this bind is not for this phone; the rest was not downloaded.
    Rejected(Reason),
    Failed(Reason),
}

/// The partial download and its validator, for a job.
pub(crate) fn download_path(dir: &Path, job_id: &str) -> PathBuf {
    dir.join(format!("{}.bind", file_safe(job_id)))
}

fn validator_path(file: &Path) -> PathBuf {
    file.with_extension("validator")
}

/// User name and password for the server, from the default access settings.
pub(crate) type Credentials = Option<(String, Option<String>)>;

/// What a download has done so far; readable after the download ends or is abandoned.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes: std::sync::atomic::AtomicU64,
    attempts: std::sync::atomic::AtomicU32,
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

#[allow(clippy::too_many_arguments)]
pub(crate) async fn fetch(
    transport: &Transport,
    credentials: &Credentials,
    cmd: &UpdateCommand,
    profile: &DeviceProfile,
    download_dir: &Path,
    policy: RetryPolicy,
    counters: &Counters,
    progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
) -> Fetched {
    let file = download_path(download_dir, &cmd.job_id);
    let result = Download { transport, credentials, cmd, profile, file: &file, policy, counters }.run(progress).await;
    if !matches!(result, Fetched::Verified { .. }) {
        remove(&file).await;
    }
    result
}

/// Deletes a download and its validator.
pub(crate) async fn remove(file: &Path) {
    let _ = tokio::fs::remove_file(file).await;
    let _ = tokio::fs::remove_file(validator_path(file)).await;
}

/// An FTP file, as shown in messages and as asked for.
struct Ftp {
    shown: String,
    path: String,
}

struct Download<'a> {
    transport: &'a Transport,
    credentials: &'a Credentials,
    cmd: &'a UpdateCommand,
    profile: &'a DeviceProfile,
    file: &'a Path,
    policy: RetryPolicy,
    counters: &'a Counters,
}

/// Why one attempt stopped.
enum Stop {
    /// The outcome is known.
    Done(Fetched),
    /// Worth another attempt.
    Retry { detail: String, status: Option<u16> },
    /// Not worth another attempt (a 404, say).
    Permanent { detail: String, status: Option<u16> },
}

struct State {
    verifier: Verifier,
    override_used: bool,
    judged: bool,
    last_percent: u8,
    /// Some of the file came from an earlier attempt or run.
    resumed: bool,
}

impl State {
    fn new(expected: Expected) -> State {
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
    fn expected(&self) -> Expected {
        Expected { size: Some(self.cmd.size), sha256: Some(self.cmd.sha256.clone()) }
    }

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
                    state = self.start_over().await;
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
        let Ok(mut f) = tokio::fs::File::open(self.file).await else { return Ok(state) };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) => return Ok(self.start_over().await),
            };
            match state.verifier.feed(&buf[..n]) {
                Ok(fed) => {
                    if let Some(header) = &fed.header {
                        if let Some(done) = self.judge(header, &mut state) {
                            return Err(done);
                        }
                    }
                }
                Err(_) => return Ok(self.start_over().await),
            }
        }
        state.resumed = state.verifier.received() > 0;
        if state.resumed {
            tracing::info!(job = %self.cmd.job_id, bytes = state.verifier.received(), "resuming a partial download");
        }
        Ok(state)
    }

    async fn start_over(&self) -> State {
        remove(self.file).await;
        State::new(self.expected())
    }

    /// Applies the compatibility rule to a header; `Some` when the bind is rejected.
    fn judge(&self, header: &bindwave_proto::BindHeader, state: &mut State) -> Option<Fetched> {
        state.judged = true;
        match decide(header, self.profile, self.cmd.override_compat) {
            Decision::Reject { rejection, .. } => Some(Fetched::Rejected(rejection.into())),
            d => {
                state.override_used = d.override_used();
                None
            }
        }
    }

    /// One HTTP(S) request from `offset`; `None` when its body ended normally.
    async fn http_transfer(
        &self,
        state: &mut State,
        progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
        offset: u64,
    ) -> Option<Stop> {
        let mut req = self.transport.http.get(&self.cmd.url);
        if let Some((user, password)) = self.credentials {
            req = req.basic_auth(user, password.as_ref());
        }
        if offset > 0 {
            req = req.header(RANGE, format!("bytes={offset}-"));
            if let Ok(v) = tokio::fs::read_to_string(validator_path(self.file)).await {
                req = req.header(IF_RANGE, v.trim());
            }
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Some(Stop::Retry { detail: format!("GET {}: {}", self.cmd.url, chain(&e)), status: None })
            }
        };
        let status = response.status();
        let code = Some(status.as_u16());
        let content_range = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok());
        match answer(status, response.content_length(), content_range, offset, self.cmd.size) {
            Answer::Body { resumed } => state.resumed |= resumed,
            Answer::StartOver => {
                *state = self.start_over().await;
                let detail = format!("the server restarted the download ({status})");
                return Some(Stop::Retry { detail, status: code });
            }
            Answer::Retry => return Some(Stop::Retry { detail: self.http_error(status), status: code }),
            Answer::Permanent => return Some(Stop::Permanent { detail: self.http_error(status), status: code }),
            Answer::NotTheBind(on_server) => {
                return Some(Stop::Permanent {
                    detail: not_the_bind(&self.cmd.url, on_server, self.cmd.size),
                    status: code,
                })
            }
        }
        if offset == 0 {
            if let Some(v) = response.headers().get(ETAG).or_else(|| response.headers().get(LAST_MODIFIED)) {
                let _ = tokio::fs::write(validator_path(self.file), v.as_bytes()).await;
            }
        }
        let mut file = match self.open_partial().await {
            Ok(f) => f,
            Err(stop) => return Some(stop),
        };
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = file.flush().await;
                    return Some(self.broken(state, &chain(&e)));
                }
            };
            if let Some(stop) = self.take(state, &mut file, &chunk, progress).await {
                return Some(stop);
            }
        }
        self.sync(&file).await
    }

    /// One FTP or FTPS retrieval from `offset` (REST), with the access credentials or anonymously.
    ///
    /// `ftps://` is explicit FTPS (AUTH TLS on the control connection, then protected data connections), or
    /// implicit FTPS when the port is 990. Either way the server's certificate is checked as for https://.
    async fn ftp_transfer(
        &self,
        state: &mut State,
        progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
        offset: u64,
    ) -> Option<Stop> {
        use suppaftp::tokio::{AsyncFtpStream, AsyncRustlsConnector, AsyncRustlsFtpStream};
        let url = match reqwest::Url::parse(&self.cmd.url) {
            Ok(u) if u.host_str().is_some() => u,
            _ => {
                return Some(Stop::Permanent {
                    detail: format!("{:?} is not an ftp:// or ftps:// URL", self.cmd.url),
                    status: None,
                })
            }
        };
        let secure = url.scheme() == "ftps";
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port().unwrap_or(21);
        let at = Ftp { shown: format!("{}://{host}:{port}{}", url.scheme(), url.path()), path: url.path().to_string() };
        let login = match self.credentials {
            Some((u, p)) => (u.clone(), p.clone().unwrap_or_default()),
            None if !url.username().is_empty() => {
                (url.username().to_string(), url.password().unwrap_or_default().to_string())
            }
            None => ("anonymous".to_string(), "bindwave@".to_string()),
        };
        let addr = (host.as_str(), port);
        let connect_timeout = Duration::from_secs(10);
        let connect_failed =
            |e: String| Some(Stop::Retry { detail: format!("cannot connect to {}: {e}", at.shown), status: None });
        if !secure {
            return match tokio::time::timeout(connect_timeout, AsyncFtpStream::connect(addr)).await {
                Ok(Ok(ftp)) => self.ftp_retrieve(ftp, &at, &login, state, progress, offset).await,
                Ok(Err(e)) => connect_failed(e.to_string()),
                Err(_) => connect_failed("no answer within 10 s".into()),
            };
        }
        let tls = || AsyncRustlsConnector::from(suppaftp::tokio_rustls::TlsConnector::from(self.transport.tls.clone()));
        let connected = tokio::time::timeout(connect_timeout, async {
            if port == 990 {
                AsyncRustlsFtpStream::connect_secure_implicit(addr, tls(), &host).await
            } else {
                AsyncRustlsFtpStream::connect(addr).await?.into_secure(tls(), &host).await
            }
        })
        .await;
        match connected {
            Ok(Ok(ftp)) => self.ftp_retrieve(ftp, &at, &login, state, progress, offset).await,
            // A certificate the phone does not trust will not become trusted by trying again.
            Ok(Err(e @ suppaftp::FtpError::SecureError(_))) => Some(Stop::Permanent {
                detail: format!("TLS with {} failed: {e} (is the server's CA in [download] ca_file?)", at.shown),
                status: None,
            }),
            Ok(Err(e)) => connect_failed(e.to_string()),
            Err(_) => connect_failed("no answer within 10 s".into()),
        }
    }

    /// Logs in on an open FTP control connection (plain or TLS) and streams the file from `offset`.
    async fn ftp_retrieve<T: suppaftp::tokio::TokioTlsStream + Send + 'static>(
        &self,
        mut ftp: suppaftp::tokio::ImplAsyncFtpStream<T>,
        at: &Ftp,
        (user, password): &(String, String),
        state: &mut State,
        progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
        offset: u64,
    ) -> Option<Stop> {
        use suppaftp::types::FileType;
        let shown = &at.shown;
        let retry = |what: &str, e: String| Some(Stop::Retry { detail: format!("{what} {shown}: {e}"), status: None });
        // Servers behind NAT often announce a private address for passive data; use the control address.
        ftp.set_passive_nat_workaround(true);
        if let Err(e) = ftp.login(user.as_str(), password.as_str()).await {
            return Some(Stop::Permanent { detail: format!("login to {shown} as {user} refused: {e}"), status: None });
        }
        if let Err(e) = ftp.transfer_type(FileType::Binary).await {
            return retry("binary mode refused by", e.to_string());
        }
        // A server that cannot say the size (no SIZE command) is judged by the transfer's end instead.
        match ftp.size(&at.path).await {
            Ok(n) if n as u64 != self.cmd.size => {
                return Some(Stop::Permanent { detail: not_the_bind(shown, n as u64, self.cmd.size), status: None })
            }
            _ => {}
        }
        if offset > 0 {
            if let Err(e) = ftp.resume_transfer(offset as usize).await {
                // The server cannot continue: start over.
                *state = self.start_over().await;
                return retry("resume refused by", e.to_string());
            }
            state.resumed = true;
        }
        let mut stream = match ftp.retr_as_stream(&at.path).await {
            Ok(s) => s,
            Err(suppaftp::FtpError::UnexpectedResponse(r)) if r.status.code() >= 500 => {
                let detail = format!("RETR {shown}: {} {}", r.status.code(), String::from_utf8_lossy(&r.body).trim());
                return Some(Stop::Permanent { detail, status: Some(r.status.code() as u16) });
            }
            Err(e) => return retry("RETR", e.to_string()),
        };
        let mut file = match self.open_partial().await {
            Ok(f) => f,
            Err(stop) => return Some(stop),
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Some(self.broken(state, &e.to_string())),
                Err(_) => return Some(self.broken(state, "no data for 60 s")),
            };
            if let Some(stop) = self.take(state, &mut file, &buf[..n], progress).await {
                return Some(stop);
            }
        }
        // The server confirms a complete transfer (226): a file that ended short of the bind is all there is.
        let complete = stream.finish().await.is_ok();
        let _ = ftp.quit().await;
        let received = state.verifier.received();
        if complete && received < self.cmd.size {
            return Some(Stop::Permanent { detail: not_the_bind(shown, received, self.cmd.size), status: None });
        }
        self.sync(&file).await
    }

    async fn open_partial(&self) -> Result<tokio::fs::File, Stop> {
        let opened = tokio::fs::OpenOptions::new().create(true).append(true).open(self.file).await;
        opened.map_err(|e| self.storage_failed("open", &e))
    }

    async fn sync(&self, file: &tokio::fs::File) -> Option<Stop> {
        file.sync_all().await.err().map(|e| self.storage_failed("sync", &e))
    }

    /// The phone's own storage failed the download: no attempt more can help.
    fn storage_failed(&self, what: &str, e: &std::io::Error) -> Stop {
        let detail = format!("{what} {}: {e}", self.file.display());
        Stop::Done(Fetched::Failed(Reason::StorageFailed { detail }))
    }

    fn http_error(&self, status: StatusCode) -> String {
        format!("GET {}: HTTP {status}", self.cmd.url)
    }

    /// A transfer broke off: worth another attempt, which resumes.
    fn broken(&self, state: &State, why: &str) -> Stop {
        let detail =
            format!("reading {}: {why} (after {} of {} bytes)", self.cmd.url, state.verifier.received(), self.cmd.size);
        Stop::Retry { detail, status: None }
    }

    /// One chunk: verified, judged when it completes the header, written, and counted.
    async fn take(
        &self,
        state: &mut State,
        file: &mut tokio::fs::File,
        chunk: &[u8],
        progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
    ) -> Option<Stop> {
        let fed = match state.verifier.feed(chunk) {
            Ok(fed) => fed,
            Err(reason) => return Some(Stop::Done(Fetched::Failed(reason))),
        };
        if let Some(header) = &fed.header {
            if let Some(rejected) = self.judge(header, state) {
                return Some(Stop::Done(rejected));
            }
        }
        self.counters.bytes.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
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

/// Where a partial response starts: `{start}` of `Content-Range: bytes {start}-{end}/{total}`.
fn range_start(content_range: Option<&str>) -> Option<u64> {
    content_range?.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// The size of the whole file on the server, where a successful response says it: the length of a whole
/// response (200), or the total of a partial one (206, `Content-Range: bytes {start}-{end}/{total}`; a total of
/// `*` says nothing).
fn file_size(status: StatusCode, content_length: Option<u64>, content_range: Option<&str>) -> Option<u64> {
    match status {
        StatusCode::OK => content_length,
        StatusCode::PARTIAL_CONTENT => content_range?.rsplit_once('/')?.1.trim().parse().ok(),
        _ => None,
    }
}

/// What an HTTP response to a request from `offset` means for the download, before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Take the body: the file from the start, or (`resumed`) its continuation at `offset`.
    Body { resumed: bool },
    /// The server will not continue this file (it changed, or ignores ranges): start over.
    StartOver,
    /// An error worth another attempt: the server's own (5xx), a timeout (408), too many requests (429).
    Retry,
    /// An error no other attempt can fix: not found, forbidden, ...
    Permanent,
    /// The server's whole file has this size, not the command's: it is not the bind the command names.
    NotTheBind(u64),
}

fn answer(
    status: StatusCode,
    content_length: Option<u64>,
    content_range: Option<&str>,
    offset: u64,
    size: u64,
) -> Answer {
    let resumed = status == StatusCode::PARTIAL_CONTENT && range_start(content_range) == Some(offset);
    if status == StatusCode::RANGE_NOT_SATISFIABLE || (status.is_success() && !resumed && offset > 0) {
        return Answer::StartOver;
    }
    if !status.is_success() {
        let transient = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        return if transient { Answer::Retry } else { Answer::Permanent };
    }
    match file_size(status, content_length, content_range) {
        Some(on_server) if on_server != size => Answer::NotTheBind(on_server),
        _ => Answer::Body { resumed },
    }
}

/// Says that the server's file of `on_server` bytes at `url` is not the bind of `size` bytes the command names.
fn not_the_bind(url: &str, on_server: u64, size: u64) -> String {
    format!("the server's file {url} is {on_server} bytes, not the {size}-byte bind the command names")
}

fn percent(received: u64, size: u64) -> u8 {
    (received.saturating_mul(100) / size.max(1)).min(100) as u8
}

/// Job ids come from the wire: keep only characters that are safe in a file name.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .take(100)
        .collect()
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

    #[test]
    fn a_response_is_taken_resumed_started_over_retried_or_refused() {
        use StatusCode as S;
        let size = 8274;
        let whole = Some(size);
        let body = |resumed| Answer::Body { resumed };
        // From the start: a whole file of the command's size.
        assert_eq!(answer(S::OK, whole, None, 0, size), body(false));
        // Resumed: the continuation at the offset asked for, of a file of the command's size.
        assert_eq!(answer(S::PARTIAL_CONTENT, Some(8174), Some("bytes 100-8273/8274"), 100, size), body(true));
        assert_eq!(answer(S::PARTIAL_CONTENT, Some(8174), Some("bytes 100-8273/*"), 100, size), body(true));
        // The server will not continue (the file changed, ranges ignored, or it starts elsewhere): start over.
        assert_eq!(answer(S::OK, whole, None, 100, size), Answer::StartOver);
        assert_eq!(answer(S::PARTIAL_CONTENT, Some(8174), Some("bytes 0-8273/8274"), 100, size), Answer::StartOver);
        assert_eq!(answer(S::RANGE_NOT_SATISFIABLE, Some(0), None, 100, size), Answer::StartOver);
        // Errors: the server's own and throttling are retried, the rest are not.
        for s in
            [S::INTERNAL_SERVER_ERROR, S::BAD_GATEWAY, S::SERVICE_UNAVAILABLE, S::REQUEST_TIMEOUT, S::TOO_MANY_REQUESTS]
        {
            assert_eq!(answer(s, None, None, 0, size), Answer::Retry, "{s}");
        }
        for s in [S::NOT_FOUND, S::FORBIDDEN, S::UNAUTHORIZED, S::GONE] {
            assert_eq!(answer(s, None, None, 0, size), Answer::Permanent, "{s}");
        }
        // A complete answer of another size is another file: shorter or longer, from the start or resumed.
        assert_eq!(answer(S::OK, Some(20), None, 0, size), Answer::NotTheBind(20));
        assert_eq!(answer(S::OK, Some(9000), None, 0, size), Answer::NotTheBind(9000));
        assert_eq!(
            answer(S::PARTIAL_CONTENT, Some(100), Some("bytes 100-199/200"), 100, size),
            Answer::NotTheBind(200)
        );
        // A length the server does not give is not judged here (the transfer's end is).
        assert_eq!(answer(S::OK, None, None, 0, size), body(false));
    }

    #[test]
    fn content_range_is_read_leniently() {
        assert_eq!(range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(range_start(Some("bytes 0-0/1")), Some(0));
        assert_eq!(range_start(Some("bytes */200")), None);
        assert_eq!(range_start(Some("items 1-2/3")), None);
        assert_eq!(range_start(None), None);
        assert_eq!(file_size(StatusCode::PARTIAL_CONTENT, Some(100), Some("bytes 100-199/200")), Some(200));
        assert_eq!(file_size(StatusCode::PARTIAL_CONTENT, Some(100), Some("bytes 100-199/*")), None);
        assert_eq!(file_size(StatusCode::PARTIAL_CONTENT, Some(100), None), None);
        assert_eq!(file_size(StatusCode::OK, Some(20), Some("bytes 0-19/20")), Some(20));
        assert_eq!(file_size(StatusCode::NO_CONTENT, Some(0), None), None);
    }

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

    #[test]
    fn a_job_id_from_the_wire_makes_a_safe_file_name() {
        let dir = Path::new("/state/downloads");
        assert_eq!(download_path(dir, "r12-phone-1"), dir.join("r12-phone-1.bind"));
        assert_eq!(download_path(dir, "../../etc/passwd"), dir.join(".._.._etc_passwd.bind"));
        assert_eq!(download_path(dir, "a/b c"), dir.join("a_b_c.bind"));
        assert_eq!(file_safe(&"x".repeat(500)).len(), 100);
        assert_eq!(validator_path(&download_path(dir, "j")), dir.join("j.validator"));
    }
}
