//! The controller's embedded MQTT broker, built on the rmqtt 0.24 library.
//!
//! Devices and the controller itself connect to this broker over TLS, each authenticated and kept to its own
//! topics (or, in lab mode, over plain TCP with no checks). It keeps retained
//! messages in RAM (the `rmqtt-retainer` plugin with its `ram` feature) and its per-client limits
//! are raised far above rmqtt's defaults, because one client (the controller) receives every
//! device's reports.
//!
//! What rmqtt does by default, and what this module changes (all read from the rmqtt 0.24.0,
//! rmqtt-net 0.5.0 and rmqtt-retainer 0.24.0 sources):
//!
//! * `max_inflight` (default 16) is the window of unacknowledged QoS 1/2 messages per client;
//!   messages past it wait in the client's queue of `max_mqueue_len` (default 1000). When that
//!   queue is full, a new QoS 1/2 message evicts the *oldest* queued one and a QoS 0 message is
//!   discarded; both are dropped silently (only a `message_dropped` hook fires). Both are raised.
//! * Messages without an MQTT 5 expiry property (all MQTT 3.1.1 messages) expire after the
//!   listener's `message_expiry_interval` (default 5 minutes) while queued or in flight. Raised
//!   to [`MESSAGE_EXPIRY`].
//! * Retained messages published over MQTT 3.1.1 expire with that same interval unless the
//!   retainer's `retained_message_ttl` is set; it is set to 0 here, meaning never.
//!   Retained payloads above the retainer's `max_payload_size` (default 1 MB) are silently
//!   forwarded as ordinary messages; it is set to the listener's `max_packet_size`.
//! * Persistent (clean-session = false) sessions of MQTT 3.1.1 clients are kept
//!   `session_expiry_interval` (default 2 h) after they disconnect. Raised to [`SESSION_EXPIRY`].
//! * With `busy_check_enable` (default on), rmqtt refuses every CONNECT with "server unavailable"
//!   while the machine's CPU use is above 90 % or its 1-minute load average is above 80, and
//!   keeps a CPU sampling task running forever. A controller under fleet load must not lock its
//!   devices out, so it is turned off.
//! * Access ([`BrokerAccess`]): by default rmqtt lets anonymous clients in and every client use every
//!   topic. [`BrokerAccess::Secure`] listens with TLS (rustls, rmqtt's `tls` feature), refuses anonymous
//!   clients and registers the [`hooks`] that authenticate each client ([`auth`]: a verified client
//!   certificate's CN, or a username with its derived password) and keep each device in its lane ([`acl`]).
//!   [`BrokerAccess::InsecureLab`] keeps rmqtt's open defaults on plain TCP, for a lab only.
//! * `max_packet_size` (default 1 MiB) is set to [`bindwave_proto::wire::MAX_PACKET_SIZE`], which clients
//!   read with slack to spare: a larger packet is refused at the broker, so no client is ever handed a
//!   packet too large for it (which would drop its connection on every reconnect, for a retained message).
//! * rmqtt logs through the `log` crate only (nothing to stdout); install a `tracing-log`
//!   bridge (tracing-subscriber's default `tracing-log` feature does it) to see it, and filter
//!   the `rmqtt`, `rmqtt_net` and `rmqtt_retainer` targets to `warn` to keep it quiet.
//!
//! rmqtt keeps no process-wide state apart from a cache of its busy check (which is off here),
//! so several brokers can run in one process, each with its own [`ServerContext`].
//!
//! [`EmbeddedBroker::start_node`] starts the same broker as one node of an rmqtt cluster ([`ClusterNode`]): a
//! node id, the cluster plugin's config, and a step that joins it (its gRPC server and its plugin), which
//! the caller brings, so the controller links no cluster plugin. `tests/broker-node` is such a node, with
//! rmqtt's `rmqtt-cluster-broadcast`; see `docs/cluster.md`.
//!
//! The TLS listener uses rmqtt-net's own rustls configuration, built with its crypto provider
//! (aws-lc-rs) explicitly, so it works whether or not the process installed a default provider.

pub mod acl;
pub mod auth;
mod hooks;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use tokio::task::JoinHandle;

/// How long a message without an MQTT 5 expiry property may wait in a client's queue or in flight.
pub const MESSAGE_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a disconnected MQTT 3.1.1 client's persistent session (clean session = false),
/// with its subscriptions and queued messages, is kept.
pub const SESSION_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);
/// Pending-connection queue of the listening socket; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;
/// How long [`EmbeddedBroker::shutdown`] waits for connected clients to be disconnected.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest packet MQTT can encode (remaining length of 268,435,455 bytes plus the header).
const MQTT_MAX_PACKET_SIZE: usize = 268_435_460;
/// The name under which rmqtt-retainer registers itself (its crate name) and reads its config.
const RETAINER_PLUGIN: &str = "rmqtt-retainer";
/// Name of the listener in rmqtt's logs.
const LISTENER_NAME: &str = "bindwave/tcp";
/// Name of the TLS listener in rmqtt's logs.
const TLS_LISTENER_NAME: &str = "bindwave/tls";

/// Who may connect, and what they may do.
#[derive(Clone, Default)]
pub enum BrokerAccess {
    /// Lab mode: plain TCP, anonymous clients, every topic open to every client. Never for a real fleet.
    #[default]
    InsecureLab,
    /// TLS; every client authenticated; every device kept to its own topics.
    Secure(Box<SecureAccess>),
}

/// The TLS listener's files and how it knows its clients.
#[derive(Clone)]
pub struct SecureAccess {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// With a client CA (PEM), clients must show a certificate it signed, whose CN is their identity;
    /// without one, clients log in with their identity as username and its derived password.
    pub client_ca: Option<PathBuf>,
    /// What passwords derive from (unused with a client CA).
    pub secret: auth::BrokerSecret,
    /// `bindwave_refused_total`, counted by [`Refused`](crate::engine::Refused) kind.
    pub refused: Option<prometheus::IntCounterVec>,
}

impl fmt::Debug for BrokerAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerAccess::InsecureLab => f.write_str("InsecureLab"),
            BrokerAccess::Secure(s) => f
                .debug_struct("Secure")
                .field("cert", &s.cert)
                .field("key", &s.key)
                .field("client_ca", &s.client_ca)
                .finish_non_exhaustive(),
        }
    }
}

/// Limits of the embedded broker's listener, sized for a controller that receives every device's reports.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where to listen for MQTT over TCP; port 0 picks a free port (see [`EmbeddedBroker::local_addr`]).
    pub listen: SocketAddr,
    /// Unacknowledged QoS 1/2 messages the broker sends to one client before it waits for acks
    /// (1..=65535). Default 4096 (rmqtt's per-listener default 16 is far too small).
    pub max_inflight: usize,
    /// Messages queued for one client, online or offline, beyond which the oldest are dropped.
    /// Default 100_000 (rmqtt's default 1000 drops QoS 1 messages to the controller).
    pub max_mqueue_len: usize,
    /// Default 100_000. rmqtt 0.24 uses it to size the connection-handshake queue; it does not
    /// refuse MQTT 3.1.1 clients past it, so the process's open-files limit is the real ceiling.
    pub max_connections: usize,
    /// Largest MQTT packet accepted, and largest retained payload kept. Default
    /// [`bindwave_proto::wire::MAX_PACKET_SIZE`] (256 KiB), what every client reads.
    pub max_packet_size: usize,
    /// Who may connect. The default is lab mode (the library's, for tests); `bindwave serve` is secure
    /// unless asked for lab mode by name.
    pub access: BrokerAccess,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_inflight: 4096,
            max_mqueue_len: 100_000,
            max_connections: 100_000,
            max_packet_size: bindwave_proto::wire::MAX_PACKET_SIZE,
            access: BrokerAccess::InsecureLab,
        }
    }
}

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Another process (or another broker in this one) already listens on the address.
    #[error(
        "cannot listen for MQTT on {addr}: address in use \
         (is another broker running? pick another with --mqtt-listen)"
    )]
    AddrInUse {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The process may not bind the address (usually a port below 1024).
    #[error(
        "cannot listen for MQTT on {addr}: permission denied \
         (ports below 1024 need privileges; pick another with --mqtt-listen)"
    )]
    PermissionDenied {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The IP address does not belong to this machine.
    #[error(
        "cannot listen for MQTT on {addr}: address not available on this machine \
         (use one of its own addresses, 127.0.0.1 or 0.0.0.0, in --mqtt-listen)"
    )]
    AddrNotAvailable {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Any other failure to open the listening socket.
    #[error("cannot listen for MQTT on {addr}: {reason} (check --mqtt-listen)")]
    Listen { addr: SocketAddr, reason: String },
    /// A [`BrokerConfig`] value rmqtt cannot use.
    #[error("invalid MQTT broker setting {setting} = {value}: {hint}")]
    InvalidConfig { setting: &'static str, value: usize, hint: &'static str },
    /// The TLS listener's certificate, key or client CA cannot be used.
    #[error(
        "cannot listen for MQTT over TLS on {addr}: {reason} \
         (check tls_cert {cert}, tls_key {key} and mqtt_client_ca; PEM files are expected)"
    )]
    Tls { addr: SocketAddr, cert: String, key: String, reason: String },
    /// The step that joins a cluster ([`ClusterNode::join`]) failed.
    #[error("cannot join the MQTT broker cluster as node {node_id}: {reason}")]
    Cluster { node_id: u64, reason: String },
    /// The retained-message plugin failed to start.
    #[error(
        "cannot start the MQTT broker's retained-message store: {reason} \
         (check RMQTT_PLUGIN_RMQTT_RETAINER_* environment variables, which override its settings)"
    )]
    Retainer { reason: String },
}

/// What [`ClusterNode::join`] returns: rmqtt's result, once the node's gRPC server and plugin are started.
pub type JoinFuture = Pin<Box<dyn Future<Output = rmqtt::Result<()>> + Send>>;

/// The broker as one node of an rmqtt cluster. The controller's own broker is never one; a broker node
/// built on the same limits is (`tests/broker-node`).
pub struct ClusterNode {
    /// This node's id, unique in the cluster (rmqtt's `node.id`).
    pub id: u64,
    /// Plugin configs (plugin name, TOML), beside the retainer's, read when the plugins register.
    pub plugin_configs: Vec<(String, String)>,
    /// When the node stops calling a peer that fails (each peer has its own breaker), and for how long.
    pub circuit_breaker: rmqtt::context::CircuitBreakerConfig,
    /// Run once the retainer is registered and before the listener accepts: starts the node's gRPC server and
    /// registers the cluster plugin on the broker's context.
    pub join: Box<dyn FnOnce(ServerContext) -> JoinFuture + Send>,
}

impl fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plugins: Vec<&str> = self.plugin_configs.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ClusterNode").field("id", &self.id).field("plugins", &plugins).finish_non_exhaustive()
    }
}

/// A running embedded broker. Dropping it or calling shutdown stops accepting.
pub struct EmbeddedBroker {
    local_addr: SocketAddr,
    scx: ServerContext,
    /// Runs rmqtt's accept loop; aborting it drops the listening socket.
    accept_task: JoinHandle<()>,
    /// Set by [`EmbeddedBroker::shutdown`], so that `Drop` does not repeat its work.
    stopped: bool,
}

impl fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("local_addr", &self.local_addr)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Binds the listener (so a port in use fails here with a clear error), registers the retainer plugin so
    /// retained messages are kept (in RAM), and runs the broker on the current tokio runtime in a background task.
    pub async fn start(config: BrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_node(config, None).await
    }

    /// [`EmbeddedBroker::start`], as node `node` of a cluster when given: rmqtt's node id is set, the node's
    /// plugin configs are added, and its join step runs after the retainer registers.
    pub async fn start_node(config: BrokerConfig, node: Option<ClusterNode>) -> Result<EmbeddedBroker, BrokerError> {
        let max_inflight =
            u16::try_from(config.max_inflight).ok().and_then(NonZeroU16::new).ok_or(BrokerError::InvalidConfig {
                setting: "max_inflight",
                value: config.max_inflight,
                hint: "must be between 1 and 65535",
            })?;
        if config.max_mqueue_len == 0 {
            return Err(BrokerError::InvalidConfig {
                setting: "max_mqueue_len",
                value: 0,
                hint: "must be at least 1, or every message to a busy client is dropped",
            });
        }
        if config.max_connections == 0 {
            return Err(BrokerError::InvalidConfig {
                setting: "max_connections",
                value: 0,
                hint: "must be at least 1",
            });
        }
        let max_packet_size = u32::try_from(config.max_packet_size)
            .ok()
            .filter(|size| *size > 0 && config.max_packet_size <= MQTT_MAX_PACKET_SIZE)
            .ok_or(BrokerError::InvalidConfig {
                setting: "max_packet_size",
                value: config.max_packet_size,
                hint: "must be between 1 and 268435460 bytes (MQTT's largest packet)",
            })?;

        // Bind first, before any rmqtt state exists, so that a port in use is reported here.
        //
        // rmqtt's `Builder::bind` accepts port 0 and its `Listener::local_addr` reports the port
        // the kernel picked, so no pre-bound socket is needed. The listener's config keeps the
        // requested address, though, and rmqtt keys listeners and their handshake executors by
        // that config's port (with a warning for port 0), so the config is rewritten with the
        // bound address before the listener is handed to the server.
        let listen = config.listen;
        let builder = Builder::new()
            .name(if matches!(config.access, BrokerAccess::Secure(_)) { TLS_LISTENER_NAME } else { LISTENER_NAME })
            .laddr(listen)
            .backlog(LISTEN_BACKLOG)
            // Linux refuses to rebind a port with connections in TIME_WAIT without SO_REUSEADDR,
            // which would make a quick controller restart fail; two live listeners on one port
            // are still refused. On Windows SO_REUSEADDR would let a second listener steal the port.
            .reuseaddr(if cfg!(unix) { Some(true) } else { None })
            // Many small packets (acks, reports): don't let Nagle's algorithm delay them.
            .nodelay(true)
            .max_connections(config.max_connections)
            .max_packet_size(max_packet_size)
            .max_inflight(max_inflight)
            .max_mqueue_len(config.max_mqueue_len)
            .message_expiry_interval(MESSAGE_EXPIRY)
            .session_expiry_interval(SESSION_EXPIRY);
        let mut listener = match &config.access {
            BrokerAccess::InsecureLab => builder
                .allow_anonymous(true)
                .bind()
                .map_err(|err| listen_error(listen, err))?
                .tcp()
                .map_err(|err| listen_error(listen, err))?,
            BrokerAccess::Secure(access) => {
                let path = |p: &PathBuf| p.to_string_lossy().into_owned();
                let tls_error = |err: anyhow::Error| BrokerError::Tls {
                    addr: listen,
                    cert: access.cert.display().to_string(),
                    key: access.key.display().to_string(),
                    reason: format!("{err:#}"),
                };
                let mtls = access.client_ca.is_some();
                builder
                    .allow_anonymous(false)
                    .tls_cert(Some(path(&access.cert)))
                    .tls_key(Some(path(&access.key)))
                    .tls_client_ca_certs(access.client_ca.as_ref().map(path))
                    .tls_cross_certificate(mtls)
                    .cert_cn_as_username(mtls)
                    .collect_cert_info(mtls)
                    .bind()
                    .map_err(|err| listen_error(listen, err))?
                    .tls()
                    .map_err(tls_error)?
            }
        };
        let local_addr = listener.local_addr().map_err(|err| listen_error(listen, err))?;
        let mut listener_cfg = Builder::clone(&listener.cfg);
        listener_cfg.laddr = local_addr;
        listener.cfg = std::sync::Arc::new(listener_cfg);

        // The retainer reads its settings from this map (as TOML) instead of a plugins directory.
        // `retained_message_ttl = "0s"` keeps retained messages until they are replaced or
        // cleared, instead of expiring them with the listener's message expiry.
        let retainer_config = format!(
            "storage.type = \"ram\"\n\
             max_retained_messages = 0\n\
             max_payload_size = \"{max_packet_size}B\"\n\
             retained_message_ttl = \"0s\"\n"
        );
        let mut builder =
            ServerContext::new().busy_check_enable(false).plugins_config_map_add(RETAINER_PLUGIN, retainer_config);
        let mut join = None;
        if let Some(node) = node {
            // The busy thresholds are rmqtt's defaults; the busy check itself is off (above).
            builder = builder
                .node(rmqtt::node::Node::new(node.id, 80.0, 90.0, Duration::from_secs(2)))
                .circuit_breaker_config(node.circuit_breaker);
            for (name, toml) in node.plugin_configs {
                builder = builder.plugins_config_map_add(name, toml);
            }
            join = Some((node.id, node.join));
        }
        let scx = builder.build().await;
        // default_startup = true: initialise and start the plugin now; immutable = false.
        rmqtt_retainer::register(&scx, true, false)
            .await
            .map_err(|err| BrokerError::Retainer { reason: format!("{err:#}") })?;
        if let Some((node_id, join)) = join {
            join(scx.clone()).await.map_err(|err| BrokerError::Cluster { node_id, reason: format!("{err:#}") })?;
        }
        if let BrokerAccess::Secure(access) = &config.access {
            let authentication = match access.client_ca {
                Some(_) => auth::Authentication::Certificate,
                None => auth::Authentication::Password(access.secret.clone()),
            };
            hooks::install(&scx, authentication, access.refused.clone()).await;
        }

        let server = MqttServer::new(scx.clone()).listener_by_id(listener, local_addr.port()).build();
        let accept_task = tokio::spawn(async move {
            // `run` only returns once every listener's accept loop has ended, which they don't.
            if let Err(err) = server.run().await {
                tracing::error!("embedded MQTT broker stopped: {err:#}");
            }
        });
        tracing::info!(
            %local_addr,
            access = ?config.access,
            max_inflight = config.max_inflight,
            max_mqueue_len = config.max_mqueue_len,
            "embedded MQTT broker listening"
        );
        Ok(EmbeddedBroker { local_addr, scx, accept_task, stopped: false })
    }

    /// The address actually bound (useful when config.listen had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections (the listening socket is closed when this returns), then
    /// disconnects the connected clients and discards their sessions, waiting at most 10 s.
    ///
    /// rmqtt has no shutdown of its own: its accept loop is aborted. A few idle rmqtt
    /// housekeeping tasks (the retainer's 10-second expiry sweep, task queues) cannot be
    /// stopped and end with the tokio runtime.
    pub async fn shutdown(mut self) {
        self.stopped = true;
        self.accept_task.abort();
        // Wait for the aborted task to be dropped, and the listening socket with it.
        if let Err(err) = (&mut self.accept_task).await {
            if !err.is_cancelled() {
                tracing::warn!("embedded MQTT broker task failed: {err}");
            }
        }
        if tokio::time::timeout(DISCONNECT_TIMEOUT, disconnect_all(&self.scx)).await.is_err() {
            tracing::warn!(
                "embedded MQTT broker: some clients were still connected {}s after shutdown began",
                DISCONNECT_TIMEOUT.as_secs()
            );
        }
        tracing::info!(local_addr = %self.local_addr, "embedded MQTT broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // Stop accepting at once; disconnect the clients in the background if a runtime is
        // still there (without it, the connection tasks are gone anyway).
        self.accept_task.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let scx = self.scx.clone();
            runtime.spawn(async move {
                let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, disconnect_all(&scx)).await;
            });
        }
    }
}

/// Kicks every session off the broker, as an administrator's kick: the connection is closed and
/// the session, its subscriptions and its queued messages are discarded.
async fn disconnect_all(scx: &ServerContext) {
    let ids: Vec<rmqtt::types::Id> = {
        let shared = scx.extends.shared().await;
        shared.iter().map(|entry| entry.id()).collect()
    };
    if ids.is_empty() {
        return;
    }
    tracing::debug!("embedded MQTT broker: disconnecting {} clients", ids.len());
    let kicks = ids.into_iter().map(|id| async move {
        let mut entry = { scx.extends.shared().await.entry(id) };
        // clean_start = true, clear_subscriptions = true, is_admin = true.
        if let Err(err) = entry.kick(true, true, true).await {
            tracing::debug!("embedded MQTT broker: cannot disconnect {:?}: {err:#}", entry.id());
        }
    });
    futures_util::future::join_all(kicks).await;
}

/// Turns rmqtt's (anyhow) error from binding the listener into a [`BrokerError`].
fn listen_error(addr: SocketAddr, err: rmqtt::Error) -> BrokerError {
    match err.downcast::<io::Error>() {
        Ok(source) => match source.kind() {
            io::ErrorKind::AddrInUse => BrokerError::AddrInUse { addr, source },
            io::ErrorKind::PermissionDenied => BrokerError::PermissionDenied { addr, source },
            io::ErrorKind::AddrNotAvailable => BrokerError::AddrNotAvailable { addr, source },
            _ => BrokerError::Listen { addr, reason: source.to_string() },
        },
        Err(err) => BrokerError::Listen { addr, reason: format!("{err:#}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashSet;

    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, Publish, QoS};
    use tokio::sync::{mpsc, watch};

    const WAIT: Duration = Duration::from_secs(20);

    fn ephemeral() -> BrokerConfig {
        BrokerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..BrokerConfig::default() }
    }

    /// A rumqttc client whose event loop is polled in its own task, forwarding incoming packets.
    struct TestClient {
        client: AsyncClient,
        incoming: mpsc::UnboundedReceiver<Packet>,
        poller: JoinHandle<()>,
        /// While true, the event loop is not polled: the client neither reads nor acks, like a
        /// controller that is busy for a moment.
        paused: watch::Sender<bool>,
    }

    impl Drop for TestClient {
        fn drop(&mut self) {
            self.poller.abort();
        }
    }

    impl TestClient {
        /// Connects and waits for the CONNACK.
        async fn connect(id: &str, addr: SocketAddr, clean_session: bool) -> TestClient {
            let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
            options.set_keep_alive(Duration::from_secs(30));
            options.set_clean_session(clean_session);
            let (client, mut event_loop) = AsyncClient::new(options, 1000);
            let (tx, incoming) = mpsc::unbounded_channel();
            let (paused, mut pause) = watch::channel(false);
            let poller = tokio::spawn(async move {
                loop {
                    if pause.wait_for(|paused| !paused).await.is_err() {
                        return;
                    }
                    match event_loop.poll().await {
                        Ok(Event::Incoming(packet)) => {
                            if tx.send(packet).is_err() {
                                return;
                            }
                        }
                        // MQTT 3.1.1 requires the client to close the connection after DISCONNECT;
                        // rumqttc doesn't (it keeps polling, pinging and acking), and rmqtt 0.24
                        // doesn't close it either, so the "disconnected" client would go on
                        // receiving and acking messages. Dropping the event loop closes it.
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                        Ok(Event::Outgoing(_)) => {}
                        Err(_) => {
                            // The broker never sends DISCONNECT to MQTT 3.1.1 clients, so this
                            // marks "connection lost" unambiguously.
                            if tx.send(Packet::Disconnect).is_err() {
                                return;
                            }
                            // rumqttc reconnects on the next poll, at once: back off a little.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
            let mut this = TestClient { client, incoming, poller, paused };
            this.wait_for("CONNACK", |p| matches!(p, Packet::ConnAck(_))).await;
            this
        }

        async fn wait_for(&mut self, what: &str, pred: impl Fn(&Packet) -> bool) -> Packet {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                    Ok(Some(packet)) if pred(&packet) => return packet,
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("event loop ended while waiting for {what}"),
                    Err(_) => panic!("no {what} within {WAIT:?}"),
                }
            }
        }

        async fn subscribe(&mut self, topic: &str) {
            self.client.subscribe(topic, QoS::AtLeastOnce).await.expect("queue SUBSCRIBE");
            let packet = self.wait_for("SUBACK", |p| matches!(p, Packet::SubAck(_))).await;
            let Packet::SubAck(ack) = packet else { unreachable!() };
            assert!(
                ack.return_codes.iter().all(|code| matches!(code, rumqttc::SubscribeReasonCode::Success(_))),
                "subscription refused: {ack:?}"
            );
        }

        async fn next_publish(&mut self) -> Publish {
            let packet = self.wait_for("PUBLISH", |p| matches!(p, Packet::Publish(_))).await;
            let Packet::Publish(publish) = packet else { unreachable!() };
            publish
        }

        /// Publishes `count` QoS 1 messages numbered 0.. and waits until the broker acked them all.
        async fn publish_numbered(&mut self, topic: &str, count: u32) {
            let client = self.client.clone();
            let topic = topic.to_owned();
            let publisher = tokio::spawn(async move {
                for i in 0..count {
                    client
                        .publish(&topic, QoS::AtLeastOnce, false, i.to_be_bytes().to_vec())
                        .await
                        .expect("queue PUBLISH");
                }
            });
            let mut acked = 0;
            while acked < count {
                self.wait_for("PUBACK", |p| matches!(p, Packet::PubAck(_))).await;
                acked += 1;
            }
            publisher.await.expect("publisher task");
        }

        /// Receives numbered messages until `count` distinct ones arrived or nothing came for 3 s.
        async fn receive_numbered(&mut self, count: usize) -> HashSet<u32> {
            let mut seen = HashSet::new();
            while seen.len() < count {
                match tokio::time::timeout(Duration::from_secs(3), self.incoming.recv()).await {
                    Ok(Some(Packet::Publish(p))) => {
                        let bytes: [u8; 4] = p.payload[..].try_into().expect("4-byte payload");
                        seen.insert(u32::from_be_bytes(bytes));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            seen
        }

        /// Sends DISCONNECT, closes the connection, and waits until the broker has ended the
        /// connection and shows the session offline.
        async fn disconnect(mut self, broker: &EmbeddedBroker, id: &str) {
            let connections = broker.scx.connections.count();
            self.client.disconnect().await.expect("queue DISCONNECT");
            // The event loop task ends (and closes the connection) once DISCONNECT is sent.
            (&mut self.poller).await.expect("event loop task");
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let status = broker.scx.extends.shared().await.session_status(id).await;
                if broker.scx.connections.count() < connections && status.is_some_and(|s| !s.online) {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "{id} still online after {WAIT:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broker_delivers_and_retains_messages() {
        let broker = EmbeddedBroker::start(ephemeral()).await.expect("start broker");
        let addr = broker.local_addr();
        assert_ne!(addr.port(), 0, "local_addr reports the bound port");
        // The retainer read its settings from the inline config, not its defaults.
        let retainer = broker.scx.plugins.get_config(RETAINER_PLUGIN).await.expect("retainer config");
        assert_eq!(retainer["retained_message_ttl"], serde_json::json!({ "secs": 0, "nanos": 0 }), "{retainer}");
        assert_eq!(retainer["storage"], serde_json::json!("Ram"), "{retainer}");

        let mut subscriber = TestClient::connect("bw-test-sub", addr, true).await;
        let publisher = TestClient::connect("bw-test-pub", addr, true).await;
        subscriber.subscribe("bw/test/retained/+").await;

        publisher
            .client
            .publish("bw/test/retained/a", QoS::AtLeastOnce, true, b"desired-v1".to_vec())
            .await
            .expect("queue PUBLISH");
        let live = subscriber.next_publish().await;
        assert_eq!(live.topic, "bw/test/retained/a");
        assert_eq!(&live.payload[..], b"desired-v1");
        assert_eq!(live.qos, QoS::AtLeastOnce);

        // A client that subscribes after the publish gets the retained copy.
        let mut late = TestClient::connect("bw-test-late", addr, true).await;
        late.subscribe("bw/test/retained/#").await;
        let retained = late.next_publish().await;
        assert_eq!(retained.topic, "bw/test/retained/a");
        assert_eq!(&retained.payload[..], b"desired-v1");
        assert!(retained.retain, "a message replayed on subscribe carries the retain flag");

        broker.shutdown().await;
        // Shutdown disconnected the clients...
        subscriber.wait_for("connection loss", |p| matches!(p, Packet::Disconnect)).await;
        late.wait_for("connection loss", |p| matches!(p, Packet::Disconnect)).await;
        // ...and closed the listening socket: the port can be bound again right away.
        let again = EmbeddedBroker::start(BrokerConfig { listen: addr, ..BrokerConfig::default() })
            .await
            .expect("rebind the port after shutdown");
        again.shutdown().await;
    }

    /// 5,000 QoS 1 messages published in a burst while the subscriber is busy (not reading, so
    /// not acking) all arrive once it reads again. With rmqtt's defaults (16 in flight, 1000
    /// queued) the same burst loses most of them, which shows the raised limits reach rmqtt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn five_thousand_qos1_messages_to_a_busy_subscriber_all_arrive() {
        const COUNT: u32 = 5_000;
        async fn burst_received(config: BrokerConfig) -> usize {
            let broker = EmbeddedBroker::start(config).await.expect("start broker");
            let addr = broker.local_addr();
            let mut subscriber = TestClient::connect("bw-flood-sub", addr, true).await;
            let mut publisher = TestClient::connect("bw-flood-pub", addr, true).await;
            subscriber.subscribe("bw/test/flood").await;

            subscriber.paused.send_replace(true);
            publisher.publish_numbered("bw/test/flood", COUNT).await;
            subscriber.paused.send_replace(false);
            let seen = subscriber.receive_numbered(COUNT as usize).await;
            broker.shutdown().await;
            seen.len()
        }

        let raised = burst_received(ephemeral()).await;
        assert_eq!(raised, COUNT as usize, "{raised} of {COUNT} messages arrived");

        let rmqtt_defaults = BrokerConfig { max_inflight: 16, max_mqueue_len: 1000, ..ephemeral() };
        let with_defaults = burst_received(rmqtt_defaults).await;
        // Measured: 1016 to 1019 (16 in flight, the newest 1000 queued, and the few the subscriber
        // read and acked as it was being paused).
        assert!(with_defaults < 2000, "with rmqtt's default limits {with_defaults} of {COUNT} messages arrived");
    }

    /// 5,000 QoS 1 messages queued for a disconnected persistent session: all are kept with the
    /// raised `max_mqueue_len`, and with rmqtt's default of 1000 the excess is dropped. The
    /// second half shows the setting really reaches rmqtt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offline_queue_keeps_messages_up_to_max_mqueue_len() {
        const COUNT: u32 = 5_000;
        async fn queued_then_received(config: BrokerConfig) -> usize {
            let broker = EmbeddedBroker::start(config).await.expect("start broker");
            let addr = broker.local_addr();
            let mut subscriber = TestClient::connect("bw-offline-sub", addr, false).await;
            subscriber.subscribe("bw/test/offline").await;
            subscriber.disconnect(&broker, "bw-offline-sub").await;

            let mut publisher = TestClient::connect("bw-offline-pub", addr, true).await;
            publisher.publish_numbered("bw/test/offline", COUNT).await;

            let mut subscriber = TestClient::connect("bw-offline-sub", addr, false).await;
            let seen = subscriber.receive_numbered(COUNT as usize).await;
            broker.shutdown().await;
            seen.len()
        }

        let raised = queued_then_received(ephemeral()).await;
        assert_eq!(raised, COUNT as usize, "{raised} of {COUNT} queued messages arrived");

        let rmqtt_defaults = BrokerConfig { max_inflight: 16, max_mqueue_len: 1000, ..ephemeral() };
        // Measured: exactly 1000, the newest ones.
        let with_defaults = queued_then_received(rmqtt_defaults).await;
        assert!(with_defaults <= 1000 + 16, "rmqtt's default queue of 1000 kept {with_defaults} of {COUNT} messages");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_broker_on_same_port_is_refused() {
        let first = EmbeddedBroker::start(ephemeral()).await.expect("start broker");
        let addr = first.local_addr();
        let err = EmbeddedBroker::start(BrokerConfig { listen: addr, ..BrokerConfig::default() })
            .await
            .expect_err("second broker on the same port");
        assert!(matches!(err, BrokerError::AddrInUse { .. }), "unexpected error: {err:?}");
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "cannot listen for MQTT on {addr}: address in use \
                 (is another broker running? pick another with --mqtt-listen)"
            )
        );
        // The first broker still works.
        let _client = TestClient::connect("bw-still-there", addr, true).await;
        first.shutdown().await;
    }

    #[tokio::test]
    async fn invalid_limits_are_refused_before_binding() {
        for (config, setting) in [
            (BrokerConfig { max_inflight: 0, ..ephemeral() }, "max_inflight"),
            (BrokerConfig { max_inflight: 70_000, ..ephemeral() }, "max_inflight"),
            (BrokerConfig { max_mqueue_len: 0, ..ephemeral() }, "max_mqueue_len"),
            (BrokerConfig { max_connections: 0, ..ephemeral() }, "max_connections"),
            (BrokerConfig { max_packet_size: 0, ..ephemeral() }, "max_packet_size"),
        ] {
            match EmbeddedBroker::start(config).await {
                Err(BrokerError::InvalidConfig { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{setting}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
