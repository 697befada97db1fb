//! Slow downloads for simulated phones: a local HTTP proxy that passes each connection on at a capped rate.
//!
//! The phones of `--slow-download` fetch through it (their transport names it as its proxy), so the agent's own
//! download code runs unchanged over a slow link. An `https://` download asks for a tunnel (`CONNECT host:port`);
//! an `http://` one sends its request in absolute form (`GET http://host:port/path`), which the proxy passes on
//! as it came (HTTP/1.1 servers take the absolute form) to the host it names. Either way, each connection then
//! carries one peer's bytes both ways, and the server's side reaches the phone at no more than `rate` bytes a
//! second. One connection serves one server: the host of its first request.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The largest request head the proxy reads before it knows where to go.
const MAX_HEAD: usize = 16 * 1024;

/// A running throttle; it stops when dropped.
pub struct Throttle {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Throttle {
    /// Listens on a free local port; every connection through it gets at most `rate` bytes a second from its
    /// server.
    pub async fn start(rate: u64) -> std::io::Result<Throttle> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((peer, _)) => {
                        tokio::spawn(async move {
                            if let Err(e) = serve(peer, rate).await {
                                tracing::debug!("throttled connection: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("the download throttle cannot accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Throttle { addr, task })
    }

    /// The proxy URL a phone's transport names.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a request head asks to go: a tunnel (`CONNECT`) or a request passed on, and the server's `host:port`.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Tunnel(String),
    Forward(String),
}

/// Reads where a request head goes from its first line. Pure.
fn target(head: &[u8]) -> Result<Target, String> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| "a request line that is not text".to_string())?;
    let mut parts = line.split_whitespace();
    let (method, uri) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method.eq_ignore_ascii_case("CONNECT") {
        return Ok(Target::Tunnel(uri.to_string()));
    }
    let rest = uri.strip_prefix("http://").ok_or_else(|| format!("not a proxy request: {line:?}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("no host in {line:?}"));
    }
    Ok(Target::Forward(if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") }))
}

async fn serve(mut peer: TcpStream, rate: u64) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = peer.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let target = target(&head).map_err(std::io::Error::other)?;
    let (addr, passed_on) = match &target {
        Target::Tunnel(addr) => (addr, None),
        Target::Forward(addr) => (addr, Some(head)),
    };
    let mut server = TcpStream::connect(addr.as_str()).await?;
    match passed_on {
        Some(head) => server.write_all(&head).await?,
        None => peer.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?,
    }
    let (mut peer_read, mut peer_write) = peer.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = tokio::io::copy(&mut peer_read, &mut server_write);
    let down = copy_at_rate(&mut server_read, &mut peer_write, rate);
    // Either side closing ends the connection.
    tokio::select! {
        r = up => r.map(drop),
        r = down => r,
    }
}

/// Copies `from` to `to`, at most `rate` bytes a second, in pieces of a tenth of a second's worth.
async fn copy_at_rate(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    rate: u64,
) -> std::io::Result<()> {
    let rate = rate.max(1);
    let mut buf = vec![0u8; (rate / 10).clamp(1, 16 * 1024) as usize];
    let start = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        sent += n as u64;
        tokio::time::sleep_until(start + Duration::from_secs_f64(sent as f64 / rate as f64)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_says_where_it_goes() {
        let get = b"GET http://127.0.0.1:8080/binds/x.bind HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n";
        assert_eq!(target(get), Ok(Target::Forward("127.0.0.1:8080".into())));
        assert_eq!(target(b"GET http://example/x HTTP/1.1\r\n\r\n"), Ok(Target::Forward("example:80".into())));
        assert_eq!(target(b"CONNECT 127.0.0.1:8443 HTTP/1.1\r\n\r\n"), Ok(Target::Tunnel("127.0.0.1:8443".into())));
        assert!(target(b"GET /x HTTP/1.1\r\n\r\n").unwrap_err().contains("not a proxy request"));
        assert!(target(b"GET http:///x HTTP/1.1\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn a_download_through_the_throttle_is_whole_and_no_faster_than_its_rate() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let body = vec![7u8; 3000];
        let sent = body.clone();
        tokio::spawn(async move {
            let (mut s, _) = server.accept().await.unwrap();
            let mut head = vec![0u8; 1024];
            let n = s.read(&mut head).await.unwrap();
            assert!(head[..n].starts_with(b"GET http://"), "passed on in absolute form");
            s.write_all(&sent).await.unwrap();
        });
        let throttle = Throttle::start(10_000).await.unwrap();
        let mut c = TcpStream::connect(throttle.addr).await.unwrap();
        c.write_all(format!("GET http://{server_addr}/x HTTP/1.1\r\n\r\n").as_bytes()).await.unwrap();
        let began = std::time::Instant::now();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, body);
        assert!(began.elapsed() >= Duration::from_millis(250), "3000 bytes at 10,000 a second: {:?}", began.elapsed());
    }
}
