//! The HTTP server's accept loop: HTTPS (or plain HTTP in lab mode), with limits that keep one client from
//! exhausting the process.
//!
//! - A client has [`HttpLimits::header_timeout`] to finish its TLS handshake, and again to send a request's
//!   headers; then it is disconnected. Half-sent requests cannot pile up.
//! - A request body that sends nothing for [`HttpLimits::body_timeout`] ends the request.
//! - At most [`HttpLimits::max_connections`] connections are open at once. One more is closed at once, and
//!   counted in `bindwave_refused_total{what="http_connection_limit"}`. The cap comes from the process's
//!   open-files limit ([`connection_cap`]): the embedded broker, which holds a socket per phone, keeps a
//!   reserve the HTTP server never takes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::engine::Refused;
use crate::metrics::Metrics;

/// What the HTTP server allows each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// For the TLS handshake, and for each request's headers.
    pub header_timeout: Duration,
    /// The longest a request body may send nothing.
    pub body_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// The default of `http_max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors the HTTP server never takes: for the embedded broker's phones, the store and the controller's
/// own files, at least this many...
pub const RESERVE_MIN: u64 = 1024;
/// ...and at least this share of the open-files limit, in percent.
pub const RESERVE_PERCENT: u64 = 75;

/// The connection cap for a configured maximum and an open-files limit, and the descriptors held in reserve.
/// Each connection may hold two descriptors (its socket, and the bind file it downloads), so the cap is half
/// of what the reserve leaves, and never more than `configured`; at least one connection is always allowed.
pub fn connection_cap(configured: usize, open_files: u64) -> (usize, u64) {
    let reserve = (open_files * RESERVE_PERCENT / 100).max(RESERVE_MIN).min(open_files);
    let available = usize::try_from((open_files - reserve) / 2).unwrap_or(usize::MAX);
    (configured.min(available).max(1), reserve)
}

/// This process's open-files limit (the soft one, which the controller raised to the hard one at start).
pub fn open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
}

/// Serves `app` on `listener` until `shutdown` turns true; with `tls`, every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut refused_since_log = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of descriptors, most likely: wait a moment instead of spinning.
                tracing::warn!("cannot accept an HTTP connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            metrics.refused.with_label_values(&[Refused::HttpConnectionLimit.as_str()]).inc();
            if refused_since_log == 0 {
                tracing::warn!(
                    max = limits.max_connections,
                    "refusing HTTP connections: {} are open (http_max_connections)",
                    limits.max_connections
                );
            }
            refused_since_log += 1;
            continue;
        };
        if refused_since_log > 0 && permits.available_permits() > limits.max_connections / 2 {
            tracing::info!(refused = refused_since_log, "accepting HTTP connections again");
            refused_since_log = 0;
        }
        let (app, acceptor, metrics, shutdown) = (app.clone(), acceptor.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            metrics.http_connections.inc();
            connection(stream, peer, app, acceptor, limits, shutdown).await;
            metrics.http_connections.dec();
            drop(permit);
        });
    }
}

/// One connection: its TLS handshake (within the header timeout), then HTTP/1.1 requests until it closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    limits: HttpLimits,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => http(TokioIo::new(stream), peer, app, limits, shutdown).await,
        Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => http(TokioIo::new(tls), peer, app, limits, shutdown).await,
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
}

async fn http<I>(io: I, peer: SocketAddr, app: Router, limits: HttpLimits, mut shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let body_timeout = limits.body_timeout;
    let service = tower::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
        let req = req.map(|body| Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body)));
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, "HTTP connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_broker_its_reserve() {
        // 20,000 descriptors: 15,000 kept for the broker and files, 2,500 connections of two descriptors.
        assert_eq!(connection_cap(100_000, 20_000), (2_500, 15_000));
        assert_eq!(connection_cap(DEFAULT_MAX_CONNECTIONS, 20_000), (DEFAULT_MAX_CONNECTIONS, 15_000));
        // A small limit still keeps its minimum reserve, and allows a connection.
        assert_eq!(connection_cap(1024, 1024), (1, 1024));
        assert_eq!(connection_cap(1024, 2048), (256, 1536));
        assert_eq!(connection_cap(0, 0), (1, 0));
    }
}
