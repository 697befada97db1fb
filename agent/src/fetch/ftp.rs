//! The FTP(S) transfer (suppaftp): explicit or implicit FTPS, `SIZE` to judge the file, `REST` to resume.

use std::time::Duration;

use bindwave_proto::wire::JobState;
use tokio::io::AsyncReadExt;

use super::download::{not_the_bind, Download, State, Stop};

/// An FTP file, as shown in messages and as asked for.
struct Ftp {
    shown: String,
    path: String,
}

impl Download<'_> {
    /// One FTP or FTPS retrieval from `offset` (REST), with the access credentials or anonymously.
    ///
    /// `ftps://` is explicit FTPS (AUTH TLS on the control connection, then protected data connections), or
    /// implicit FTPS when the port is 990. Either way the server's certificate is checked as for https://.
    pub(super) async fn ftp_transfer(
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
                *state = self.start_over();
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
        self.sync(&mut file).await
    }
}
