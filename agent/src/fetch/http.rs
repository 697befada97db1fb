//! The HTTP(S) transfer (reqwest): a Range request with If-Range to resume, and what a response means.

use bindwave_proto::wire::JobState;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;

use super::download::{not_the_bind, Download, State, Stop};
use super::files::validator_path;
use crate::error::chain;

impl Download<'_> {
    /// One HTTP(S) request from `offset`; `None` when its body ended normally.
    pub(super) async fn http_transfer(
        &self,
        state: &mut State,
        progress: &mut (dyn FnMut(JobState, Option<u8>) + Send),
        offset: u64,
    ) -> Option<Stop> {
        // A simulated fleet's turn, held through the body (a phone's own transport has no turns).
        let _turn = self.transport.turn().await;
        let mut req = self.transport.http.get(&self.cmd.url);
        if let Some((user, password)) = self.credentials {
            req = req.basic_auth(user, password.as_ref());
        }
        if offset > 0 {
            req = req.header(RANGE, format!("bytes={offset}-"));
            if let Ok(v) = std::fs::read_to_string(validator_path(self.file)) {
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
                *state = self.start_over();
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
                let _ = std::fs::write(validator_path(self.file), v.as_bytes());
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
        self.sync(&mut file).await
    }

    fn http_error(&self, status: StatusCode) -> String {
        format!("GET {}: HTTP {status}", self.cmd.url)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
