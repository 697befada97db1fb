//! A download server that misbehaves: an HTTP proxy in front of the controller's `/binds/` that, by the dice,
//! drops a connection mid-body, stalls mid-body and then drops it, or serves a short file (a response whose
//! Content-Length and body are both cut, so that only the size and hash in the command can tell). It can also
//! throttle every body, so that phones are caught mid-download.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Dice;

/// What the proxy does to responses: each connection draws one fault, with these chances in percent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub drop_pct: u64,
    pub stall_pct: u64,
    pub short_pct: u64,
    /// How long a stalled response sends nothing before it is dropped.
    pub stall: Duration,
    /// Body bytes a second, for every response (none: as fast as it goes).
    pub rate: Option<u64>,
}

/// What the proxy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub passed: u64,
    pub dropped: u64,
    pub stalled: u64,
    pub short: u64,
}

pub struct Proxy {
    /// `http://127.0.0.1:<port>`: the controller's `--public-url`.
    pub url: String,
    pub stats: Arc<Mutex<Stats>>,
    pub faults: Arc<Mutex<Faults>>,
    upstream: Arc<Mutex<String>>,
}

#[derive(Clone, Copy)]
enum Fault {
    Pass,
    Drop,
    Stall,
    Short,
}

impl Proxy {
    /// Listens on a free port; forwards to the upstream [`Proxy::set_upstream`] gives (the controller, which is
    /// started with this proxy as its public URL).
    pub fn start(faults: Faults, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("the proxy's address"));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let faults = Arc::new(Mutex::new(faults));
        let dice = Arc::new(Mutex::new(Dice::new(seed)));
        let upstream = Arc::new(Mutex::new(String::new()));
        let (st, fa, up) = (stats.clone(), faults.clone(), upstream.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let f = *fa.lock().expect("faults");
                let roll = dice.lock().expect("dice").below(100);
                let fault = if roll < f.drop_pct {
                    Fault::Drop
                } else if roll < f.drop_pct + f.stall_pct {
                    Fault::Stall
                } else if roll < f.drop_pct + f.stall_pct + f.short_pct {
                    Fault::Short
                } else {
                    Fault::Pass
                };
                let cut = 10 + dice.lock().expect("dice").below(80);
                let (st, upstream) = (st.clone(), up.lock().expect("upstream").clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &upstream, fault, cut, f, &st);
                });
            }
        });
        Proxy { url, stats, faults, upstream }
    }

    /// Where to forward to: `127.0.0.1:port` of the controller's HTTP.
    pub fn set_upstream(&self, addr: &str) {
        *self.upstream.lock().expect("upstream") = addr.to_string();
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().expect("stats").clone()
    }

    /// Changes the faults from the next connection on.
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().expect("faults") = faults;
    }
}

fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 || head.len() > 64 * 1024 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// The head without its `Connection` and `Content-Length` headers, with `Connection: close` and, if given, a
/// new length.
fn rewrite(head: &str, length: Option<u64>) -> String {
    let mut out = String::new();
    for line in head.trim_end().split("\r\n") {
        let name = line.split_once(':').map(|(k, _)| k.trim().to_ascii_lowercase());
        match name.as_deref() {
            Some("connection") => continue,
            Some("content-length") if length.is_some() => continue,
            _ => {}
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if let Some(n) = length {
        out.push_str(&format!("Content-Length: {n}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    fault: Fault,
    cut: u64,
    f: Faults,
    st: &Mutex<Stats>,
) -> std::io::Result<()> {
    let Some(request) = read_head(&mut client)? else { return Ok(()) };
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(rewrite(&request, None).as_bytes())?;
    let Some(response) = read_head(&mut up)? else { return Ok(()) };
    let length = response.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    });
    let ok = response.starts_with("HTTP/1.1 2");
    let length = length.unwrap_or(0);
    // Only a body worth cutting is cut: an error answer passes as it is.
    let fault = if ok && length > 1024 { fault } else { Fault::Pass };
    let send = match fault {
        Fault::Pass => length,
        _ => length * cut / 100,
    };
    let head = match fault {
        Fault::Short => rewrite(&response, Some(send)),
        _ => rewrite(&response, None),
    };
    client.write_all(head.as_bytes())?;
    let mut left = send;
    let mut buf = vec![0u8; 16 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = up.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        client.write_all(&buf[..n])?;
        left -= n as u64;
        if let Some(rate) = f.rate {
            std::thread::sleep(Duration::from_micros(n as u64 * 1_000_000 / rate.max(1)));
        }
    }
    let mut stats = st.lock().expect("stats");
    match fault {
        Fault::Pass => stats.passed += 1,
        Fault::Drop => stats.dropped += 1,
        Fault::Stall => stats.stalled += 1,
        Fault::Short => stats.short += 1,
    }
    drop(stats);
    if let Fault::Stall = fault {
        client.flush()?;
        std::thread::sleep(f.stall);
    }
    // Dropped: the connection closes with the body unfinished.
    let _ = client.shutdown(std::net::Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_head_closes_and_carries_the_new_length() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: keep-alive\r\nETag: \"x\"\r\n\r\n";
        let out = rewrite(head, Some(40));
        assert_eq!(out, "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 40\r\nConnection: close\r\n\r\n");
        let kept = rewrite(head, None);
        assert!(kept.contains("Content-Length: 100\r\n") && kept.ends_with("Connection: close\r\n\r\n"));
    }
}
