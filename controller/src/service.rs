//! `bindwave serve`: the engine wrapped in IO.
//!
//! One task (the core) owns the [`Engine`] and the [`Store`]. It takes device messages from the MQTT link
//! and requests from the HTTP API, in batches: it applies every input of a batch to the engine, writes the
//! records the engine returned and flushes the store once for the whole batch (group commit), and only then
//! publishes the commands and answers the requests. A crash can lose an unflushed batch, but never leave a
//! command out in the world that the store does not know about.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bindwave_link::{LinkEvent, LinkOptions};
use bindwave_proto::command_signing::signed_message;
use bindwave_proto::wire::{
    parse_topic, Command, CommandKind, CommandMessage, DeviceId, Hello, Presence, Report, TopicKind, MAX_MESSAGE_LEN,
};
use bindwave_proto::PublicKey;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::broker::acl::{Identity, CONTROLLER_IDENTITY};
use crate::broker::{BrokerAccess, BrokerConfig, EmbeddedBroker};
use crate::clock::now_millis;
use crate::engine::{Effects, Engine, Input, Record, Refusal, RefusalLog, Refused, Reply};
use crate::handle::{Core, ExportTo, QueryFn, ReplyTo, Request};
use crate::keys::SigningKey;
use crate::metrics::Metrics;
use crate::model::{JobId, JobPhase};
use crate::store::backup::Exported;
use crate::store::Store;
use crate::ControllerError;

/// The most inputs one batch takes before it commits.
const MAX_BATCH: usize = 4096;
/// A batch that must be flushed and holds fewer inputs than this waits up to [`LINGER`] for more: a flush and
/// its wake-ups cost the same for one input as for a thousand, so a fleet's reports are taken in fewer, larger
/// commits (measured over a 10,000-phone rollout: about 870 store flushes instead of 1,900; BENCHMARKS.md).
const LINGER_BELOW: usize = 64;
/// The longest a small batch waits for more inputs before it commits.
const LINGER: Duration = Duration::from_millis(1);
/// How often the core checks deadlines.
const TICK: Duration = Duration::from_secs(1);
/// How far behind the store's last write a wall clock may start and still be taken for one set back while the
/// controller was stopped (beyond it, the controller's own clock was wrong, and the wall clock is taken): a day.
const MAX_SET_BACK: u64 = 24 * 3_600_000;
/// A difference between the wall clock and the controller's time that counts as a jump, in milliseconds.
const CLOCK_JUMP: i64 = 2_000;
/// Device messages that may wait for the core before the link stops reading from the broker.
const LINK_EVENTS: usize = 2 * MAX_BATCH;
/// How soon the core tries again to hand the link what it could not take.
const OUTBOX_RETRY: Duration = Duration::from_millis(5);
/// How long a signed command stays valid when it carries no time limit of its own (acks, and updates without
/// one), unless `command_ttl` says otherwise: a day. Long enough for a phone that is off overnight to act on
/// what it finds queued for it in the morning; a command still wanted after that is sent again (and signed
/// again) when the phone says hello. Short enough that a command captured off an open broker is worthless
/// tomorrow.
pub const DEFAULT_COMMAND_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where the controller's MQTT traffic goes.
#[derive(Debug, Clone)]
pub enum MqttMode {
    /// Start the embedded broker.
    Embedded(BrokerConfig),
    /// Use a broker that runs elsewhere, `mqtt://host:port` or `mqtts://host:port`.
    External(String),
}

/// How the controller logs in to its broker. With the secure embedded broker, the username and password
/// default to the controller's identity and its derived password.
#[derive(Debug, Clone, Default)]
pub struct BrokerLogin {
    /// The CA the broker is verified against, and a client certificate (mutual TLS).
    pub tls: bindwave_link::TlsFiles,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub mqtt: MqttMode,
    /// The base URL agents fetch binds from; defaults to `https://{http address}` (`http://` in lab mode).
    pub public_url: Option<String>,
    /// The Prometheus analysis gates query; `None`: rollouts with analyses are refused.
    pub prometheus_url: Option<String>,
    /// Where rollout events are posted.
    pub webhooks: Option<crate::webhooks::Webhooks>,
    /// Which binds are added and rolled out: signed by a trusted release key, unless unsigned ones are
    /// allowed (a lab setting).
    pub images: crate::images::ImagePolicy,
    /// How long a signed command without a time limit of its own stays valid ([`DEFAULT_COMMAND_TTL`]).
    pub command_ttl: Duration,
    /// The controller's own login to the broker.
    pub login: BrokerLogin,
    pub http: HttpOptions,
}

/// How the HTTP server lets clients in.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Lab mode: no token is asked for (and, without `tls`, plain HTTP).
    pub insecure_lab: bool,
    /// The server's certificate chain and private key (PEM); `None` serves plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `http_max_connections`, before the open-files limit caps it.
    pub max_connections: usize,
    /// `max_upload_size`, in bytes.
    pub max_upload_size: u64,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

/// The default of `max_upload_size`: 2 GiB.
pub const DEFAULT_MAX_UPLOAD_SIZE: u64 = 2 << 30;

impl Default for HttpOptions {
    /// Tokens, plain HTTP, the default limits.
    fn default() -> Self {
        HttpOptions {
            insecure_lab: false,
            tls: None,
            max_connections: crate::http_server::DEFAULT_MAX_CONNECTIONS,
            max_upload_size: DEFAULT_MAX_UPLOAD_SIZE,
            header_timeout: crate::http_server::HEADER_TIMEOUT,
            body_timeout: crate::http_server::BODY_TIMEOUT,
        }
    }
}

/// A running controller.
pub struct Service {
    pub http_addr: SocketAddr,
    /// `https://ADDR`, or `http://ADDR` without TLS.
    pub http_url: String,
    /// Where the first admin token was written, on the first start with tokens.
    pub admin_token_file: Option<PathBuf>,
    /// The broker the controller and agents use: `mqtts://host:port`, or `mqtt://host:port` in lab mode.
    pub mqtt_url: String,
    pub core: Core,
    /// The public half of the key that signs every command (`data_dir/controller.key.pub`): what phones pin.
    pub command_key: PublicKey,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    core_task: JoinHandle<Result<(), ControllerError>>,
    broker: Option<EmbeddedBroker>,
}

impl Service {
    pub async fn start(opts: ServeOptions) -> Result<Service, ControllerError> {
        let images_dir = opts.data_dir.join("images");
        std::fs::create_dir_all(&images_dir).map_err(crate::error::io_err("create", &images_dir))?;
        let store = Store::open(&opts.data_dir.join("store"))?;
        let ahead = store.last_time().saturating_sub(crate::clock::wall_millis());
        if ahead > MAX_SET_BACK {
            tracing::error!(
                ahead_hours = ahead / 3_600_000,
                "the store's last write is more than a day ahead of the wall clock: the clock the controller ran on \
                 was wrong; taking the wall clock's time (a soak under way lasts longer by as much)"
            );
        } else if crate::clock::not_before(store.last_time()) > 0 {
            tracing::warn!(
                by_secs = ahead / 1000,
                "the wall clock is behind the last time the store recorded: it was set back while the controller was \
                 stopped; the controller's time carries on from the store's, and soaks and time limits are not stretched"
            );
        }
        let key_path = opts.data_dir.join("controller.key");
        let (signer, made) = SigningKey::load_or_create(&key_path)?;
        let command_key = signer.public();
        tracing::info!(
            key_id = %signer.key_id(),
            path = %key_path.display(),
            public = %crate::keys::public_path(&key_path).display(),
            "{} the command key {}: phones pin {} ([trust] controller_keys, or the file as controller_key_files)",
            if made { "made" } else { "signing commands with" },
            signer.key_id(),
            command_key.to_line(),
        );
        // After the store's lock: no other controller is uploading into this directory.
        let work = opts.data_dir.join(crate::backup::WORK_DIR);
        if work.exists() {
            // Backups that were being put together when the controller stopped.
            std::fs::remove_dir_all(&work).map_err(crate::error::io_err("remove", &work))?;
        }
        let removed = crate::api::remove_unfinished_uploads(&images_dir)?;
        if removed > 0 {
            tracing::info!(removed, dir = %images_dir.display(), "removed unfinished uploads");
        }
        let tokens = store.tokens()?;
        let deliveries = store.deliveries()?;
        let wake = Arc::new(tokio::sync::Notify::new());
        let admin_token_file = if opts.http.insecure_lab { None } else { tokens.first_admin(&opts.data_dir).await? };
        if let Some(path) = &admin_token_file {
            tracing::info!(path = %path.display(), "wrote the first admin token (mode 0600); the CLI reads it from there");
        }
        let tls = match &opts.http.tls {
            Some((cert, key)) => Some(Arc::new(crate::tls::server_config(cert, key)?)),
            None => None,
        };
        if opts.http.insecure_lab {
            tracing::warn!(
                "INSECURE LAB MODE: the HTTP API asks for no token, anyone who reaches it can roll out anything{}",
                if tls.is_none() { ", and it is plain HTTP" } else { "" }
            );
        }

        let metrics = Arc::new(Metrics::new());
        let mut login = opts.login.clone();
        let (broker, mqtt_url) = match &opts.mqtt {
            MqttMode::Embedded(cfg) => {
                let mut cfg = cfg.clone();
                let secure = match &mut cfg.access {
                    BrokerAccess::InsecureLab => false,
                    BrokerAccess::Secure(access) => {
                        access.refused.get_or_insert_with(|| metrics.refused.clone());
                        if access.client_ca.is_none() && login.username.is_none() {
                            login.username = Some(CONTROLLER_IDENTITY.to_string());
                            login.password = Some(access.secret.password(&Identity::Controller));
                        }
                        true
                    }
                };
                let broker = EmbeddedBroker::start(cfg).await?;
                let addr = broker.local_addr();
                // The controller reaches its own broker on loopback when it listens on every address.
                let ip = match addr.ip() {
                    ip if !ip.is_unspecified() => ip,
                    std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                };
                let scheme = if secure { "mqtts" } else { "mqtt" };
                (Some(broker), format!("{scheme}://{}", SocketAddr::new(ip, addr.port())))
            }
            MqttMode::External(url) => {
                bindwave_link::BrokerUrl::parse(url)?;
                (None, url.clone())
            }
        };

        let listener = tokio::net::TcpListener::bind(opts.http_listen)
            .await
            .map_err(|source| ControllerError::HttpListen { addr: opts.http_listen, source })?;
        let http_addr =
            listener.local_addr().map_err(|source| ControllerError::HttpListen { addr: opts.http_listen, source })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let http_url = format!("{scheme}://{http_addr}");
        let public_url = opts.public_url.clone().unwrap_or_else(|| http_url.clone());

        if opts.images.allow_unsigned {
            tracing::warn!(
                "LAB SETTING allow_unsigned_images = true: UNSIGNED images are added and rolled out; never on a real \
                 fleet"
            );
        }
        let ids: Vec<String> = opts.images.release_keys.ids().map(|id| id.to_string()).collect();
        if ids.is_empty() && !opts.images.allow_unsigned {
            tracing::warn!("no release key in `release_keys`: no image can be added until one is set");
        } else {
            tracing::info!(
                "release keys trusted for images: {}",
                if ids.is_empty() { "none".into() } else { ids.join(", ") }
            );
        }
        let mut engine = Engine::new(public_url)
            .with_release_policy(opts.images.release())
            .with_analysis(opts.prometheus_url.is_some());
        store.load(|record| engine.restore(record))?;

        // The client id is the controller's identity, which no device can have (brokers that check it refuse
        // a device that would take over the controller's session).
        let mut link_opts = LinkOptions::new(&mqtt_url, CONTROLLER_IDENTITY);
        link_opts.tls = login.tls;
        link_opts.username = login.username;
        link_opts.password = login.password;
        link_opts.inflight = 1000;
        link_opts.request_capacity = 8192;
        link_opts.event_capacity = LINK_EVENTS;
        let link = bindwave_link::connect(link_opts)?;

        let (tx, rx) = mpsc::channel(1024);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (changes, changes_rx) = watch::channel(0u64);
        let core = Core::new(tx, metrics.clone(), opts.data_dir.clone(), opts.images.clone(), changes_rx);

        let core_loop = CoreLoop {
            engine,
            store,
            client: link.client.clone(),
            metrics,
            outbox: VecDeque::new(),
            signer,
            command_ttl: opts.command_ttl,
            refusals: RefusalLog::default(),
            clock_step: crate::clock::step(),
            prometheus: match &opts.prometheus_url {
                Some(url) => Some(crate::prometheus::Prometheus::new(url).map_err(|e| {
                    ControllerError::BadRequest(format!("prometheus_url {url:?}: {}", crate::error_chain(&e)))
                })?),
                None => None,
            },
            measured: mpsc::channel(64),
            webhooks: opts.webhooks.clone().map(|w| (w, deliveries.clone(), wake.clone())),
            changes,
        };
        let core_task = tokio::spawn(core_loop.run(link.events, rx, shutdown_rx.clone()));
        let mut tasks = vec![link.task];
        if let Some(hooks) = opts.webhooks.clone() {
            tracing::info!(urls = ?hooks.urls, "rollout events are posted to webhooks");
            tasks.push(tokio::spawn(crate::webhooks::deliver(hooks, deliveries.clone(), wake)));
        }

        let api_options = crate::api::ApiOptions {
            tokens,
            insecure_lab: opts.http.insecure_lab,
            max_upload_size: opts.http.max_upload_size,
            deliveries,
        };
        let app = crate::api::router(core.clone(), api_options);
        let open_files = crate::http_server::open_files_limit();
        let (max_connections, reserve) = crate::http_server::connection_cap(opts.http.max_connections, open_files);
        tracing::info!(
            open_files,
            reserve,
            max_connections,
            configured = opts.http.max_connections,
            "HTTP connections capped: descriptors kept in reserve for MQTT and files"
        );
        let limits = crate::http_server::HttpLimits {
            header_timeout: opts.http.header_timeout,
            body_timeout: opts.http.body_timeout,
            max_connections,
        };
        let http_task = tokio::spawn(crate::http_server::serve(
            listener,
            app,
            tls,
            limits,
            core.metrics.clone(),
            shutdown_rx.clone(),
        ));
        tracing::info!(%http_url, mqtt = %mqtt_url, "controller running");
        Ok(Service {
            http_addr,
            http_url,
            admin_token_file,
            mqtt_url,
            core,
            command_key,
            shutdown,
            tasks: {
                tasks.push(http_task);
                tasks
            },
            core_task,
            broker,
        })
    }

    /// Runs until `signal` completes, or until the core stops on its own (a store failure), then stops.
    pub async fn run_until(mut self, signal: impl std::future::Future<Output = ()>) -> Result<(), ControllerError> {
        let ended = tokio::select! {
            () = signal => None,
            ended = &mut self.core_task => Some(ended),
        };
        match ended {
            None => self.stop().await,
            Some(ended) => {
                self.teardown().await;
                core_result(ended)
            }
        }
    }

    /// Stops the HTTP server, the core (after its current batch), the MQTT link and the embedded broker.
    pub async fn stop(mut self) -> Result<(), ControllerError> {
        let _ = self.shutdown.send(true);
        let result = match tokio::time::timeout(Duration::from_secs(10), &mut self.core_task).await {
            Ok(ended) => core_result(ended),
            Err(_) => Ok(()),
        };
        self.teardown().await;
        result
    }

    async fn teardown(self) {
        let _ = self.shutdown.send(true);
        self.core_task.abort();
        for t in self.tasks {
            t.abort();
        }
        if let Some(b) = self.broker {
            b.shutdown().await;
        }
    }
}

/// When a command sent at `now` expires, in unix seconds: after the job's time limit (past it the controller
/// counts the job timed out, and a hello gets it sent again, signed again), or `ttl` for a command without one.
fn expiry(command: &Command, ttl: Duration, now: crate::model::Millis) -> u64 {
    let life = match command {
        Command::Update(u) => u.timeout_secs.map_or(ttl, Duration::from_secs),
        Command::Ack { .. } | Command::Cancel { .. } => ttl,
    };
    (now / 1000).saturating_add(life.as_secs().max(1))
}

/// Each job's story in a `job` span (rollout, job id, device), and each audited decision in a `rollout` span:
/// operator actions and gate decisions at info, a job's steps at debug and its outcome at info.
fn log_record(record: &Record) {
    match record {
        Record::Job(job) => {
            let span = tracing::info_span!("job", rollout = %job.rollout, job_id = %job.id(), device = %job.device);
            let _in = span.enter();
            let outcome = job.phase.outcome().as_str();
            match &job.phase {
                JobPhase::Rejected { reason, .. } | JobPhase::Failed { reason, .. } => {
                    tracing::info!(outcome, reason = reason.code(), "job finished: {reason}")
                }
                p if p.is_final() => tracing::info!(outcome, "job finished"),
                _ => tracing::debug!(outcome, wave = job.wave + 1, attempt = job.attempt, "job {outcome}"),
            }
        }
        Record::Audit(a) => {
            let rollout = a.rollout.map_or_else(|| "-".to_string(), |r| r.to_string());
            let span = tracing::info_span!("rollout", rollout = rollout.as_str());
            let _in = span.enter();
            tracing::info!(actor = %a.actor, action = %a.action, seq = a.seq, "{}: {}", a.action, a.reason);
        }
        _ => {}
    }
}

fn core_result(ended: Result<Result<(), ControllerError>, tokio::task::JoinError>) -> Result<(), ControllerError> {
    ended.unwrap_or_else(|e| Err(ControllerError::CoreStopped(e.to_string())))
}

struct CoreLoop {
    engine: Engine,
    store: Store,
    client: AsyncClient,
    metrics: Arc<Metrics>,
    /// Commands already durable that the link could not take yet, in order. The core never waits on the link
    /// (the link waits on the core when it falls behind; both waiting would be a deadlock), so what does not
    /// fit in the link's request queue waits here and goes first on the next turn.
    outbox: VecDeque<Outgoing>,
    /// Signs every command as it is handed to the link (so a command sent again is signed again, with a new
    /// expiry).
    signer: SigningKey,
    command_ttl: Duration,
    /// When each kind of refused input was last logged.
    refusals: RefusalLog,
    /// The wall clock's jump from the controller's time, as last reported (ms).
    clock_step: i64,
    /// Where analysis measurements are taken.
    prometheus: Option<crate::prometheus::Prometheus>,
    /// Measurements taken, on their way back to the engine.
    measured: (mpsc::Sender<Input>, mpsc::Receiver<Input>),
    /// Where rollout events go: the webhooks, their queue, and the deliverer's wake-up.
    webhooks: Option<(crate::webhooks::Webhooks, crate::webhooks::Deliveries, Arc<tokio::sync::Notify>)>,
    /// The count of durable changes, for those who follow them (`/api/v1/events`).
    changes: watch::Sender<u64>,
}

/// What the core hands the link.
enum Outgoing {
    Subscribe(TopicKind),
    Command(bindwave_proto::wire::DeviceId, Command),
}

/// One batch's worth of work.
#[derive(Default)]
struct Batch {
    effects: Effects,
    replies: Vec<(ReplyTo, Result<Reply, ControllerError>)>,
    queries: Vec<QueryFn>,
    backups: Vec<(std::fs::File, ExportTo)>,
    connected: bool,
}

impl CoreLoop {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<LinkEvent>,
        mut requests: mpsc::Receiver<Request>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ControllerError> {
        // Commands owed from before a restart go out once the broker is reachable (on the first connect).
        let mut owed = self.engine.resume(now_millis());
        // Device timeouts and soak times are checked every second.
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Batch::default();
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return Ok(()),
                Some(ev) = events.recv() => self.on_link(ev, &mut batch),
                Some(req) = requests.recv() => self.on_request(req, &mut batch),
                Some(input) = self.measured.1.recv() => self.apply(input, &mut batch),
                _ = ticks.tick() => {
                    self.metrics.store_size.set(self.store.size_on_disk() as i64);
                    self.watch_clock();
                    if self.engine.next_deadline().is_some_and(|d| d <= now_millis()) {
                        self.apply(Input::Tick, &mut batch);
                    }
                }
                _ = tokio::time::sleep(OUTBOX_RETRY), if !self.outbox.is_empty() => {}
                else => return Ok(()),
            }
            // Take whatever else has arrived in this instant into the same commit.
            let mut n = 1;
            while n < MAX_BATCH {
                if let Ok(ev) = events.try_recv() {
                    self.on_link(ev, &mut batch);
                } else if let Ok(req) = requests.try_recv() {
                    self.on_request(req, &mut batch);
                } else {
                    break;
                }
                n += 1;
            }
            if n < LINGER_BELOW && !batch.effects.persist.is_empty() {
                let until = tokio::time::Instant::now() + LINGER;
                while n < MAX_BATCH {
                    let next = match events.try_recv() {
                        Ok(ev) => Some(ev),
                        Err(_) => tokio::time::timeout_at(until, events.recv()).await.ok().flatten(),
                    };
                    let Some(ev) = next else { break };
                    self.on_link(ev, &mut batch);
                    n += 1;
                }
            }
            self.metrics.batch_inputs.observe(n as f64);
            self.commit(batch, &mut owed).await?;
        }
    }

    /// Reports a jump of the wall clock (beyond [`CLOCK_JUMP`] since the last report): the controller's time
    /// does not follow it while it runs (see [`crate::clock`]).
    fn watch_clock(&mut self) {
        let step = crate::clock::step();
        self.metrics.clock_step.set((step as f64 / 1000.0).round() as i64);
        if (step - self.clock_step).abs() >= CLOCK_JUMP {
            tracing::warn!(
                wall_ahead_secs = (step as f64 / 1000.0).round() as i64,
                "the wall clock jumped: soaks, time limits and liveness go on in the controller's steady time; the \
                 times it records take up the wall clock's at its next start"
            );
            self.clock_step = step;
        }
    }

    fn on_request(&mut self, req: Request, batch: &mut Batch) {
        match req {
            Request::Act { input, reply } => {
                let result = self.engine.handle(input, now_millis()).map_err(ControllerError::from).map(|(r, fx)| {
                    batch.effects.extend(fx);
                    r
                });
                batch.replies.push((reply, result));
            }
            Request::Query(q) => batch.queries.push(q),
            Request::Backup { to, reply } => batch.backups.push((to, reply)),
        }
    }

    fn on_link(&mut self, ev: LinkEvent, batch: &mut Batch) {
        match ev {
            LinkEvent::Connected => {
                self.metrics.mqtt_connected.set(1);
                batch.connected = true;
            }
            LinkEvent::Disconnected(why) => {
                if self.metrics.mqtt_connected.get() == 1 {
                    tracing::warn!("lost the broker: {why}; reconnecting");
                }
                self.metrics.mqtt_connected.set(0);
            }
            LinkEvent::Message { topic, payload, .. } => {
                let Some((device, kind)) = parse_topic(&topic) else {
                    self.metrics.messages_malformed.with_label_values(&["topic"]).inc();
                    self.metrics.refused.with_label_values(&[Refused::Malformed.as_str()]).inc();
                    if let Some(n) = self.refusals.note(Refused::Malformed, now_millis()) {
                        tracing::warn!(what = "malformed", count = n, "dropping a message on a topic that is not ours");
                    }
                    return;
                };
                let Some(kind_name) = crate::metrics::MessageKind::of(kind).map(|k| k.as_str()) else { return };
                self.metrics.messages_received.with_label_values(&[kind_name]).inc();
                if payload.len() > MAX_MESSAGE_LEN {
                    self.metrics.messages_malformed.with_label_values(&[kind_name]).inc();
                    let detail =
                        format!("a {kind_name} of {} bytes, over the {MAX_MESSAGE_LEN}-byte limit", payload.len());
                    return self.refused(Refusal { what: Refused::Oversized, device, detail });
                }
                let input = match kind {
                    TopicKind::Hello => Hello::from_json(&payload).map(|h| {
                        if h.device_id == device {
                            Ok(Input::Hello(h))
                        } else {
                            let detail = format!("hello for device {} on {device}'s topic", h.device_id);
                            Err(Refusal { what: Refused::HelloForOtherDevice, device: device.clone(), detail })
                        }
                    }),
                    TopicKind::Presence => {
                        Presence::from_json(&payload).map(|p| Ok(Input::Presence(device.clone(), p)))
                    }
                    TopicKind::Reports => Report::from_json(&payload).map(|r| Ok(Input::Report(device.clone(), r))),
                    TopicKind::Commands => return,
                };
                match input {
                    Ok(Ok(Input::Report(device, report))) => self.apply_report(device, report, batch),
                    Ok(Ok(input)) => self.apply(input, batch),
                    Ok(Err(refusal)) => {
                        self.metrics.messages_malformed.with_label_values(&[kind_name]).inc();
                        self.refused(refusal);
                    }
                    Err(e) => {
                        self.metrics.messages_malformed.with_label_values(&[kind_name]).inc();
                        self.refused(Refusal { what: Refused::Malformed, device, detail: e.to_string() });
                    }
                }
            }
        }
    }

    /// Counts a refused input, and logs it unless its kind was logged less than a minute ago.
    fn refused(&mut self, refusal: Refusal) {
        let Refusal { what, device, detail } = refusal;
        self.metrics.refused.with_label_values(&[what.as_str()]).inc();
        if let Some(n) = self.refusals.note(what, now_millis()) {
            let more = if n > 1 { format!(" ({n} of this kind in the last minute)") } else { String::new() };
            tracing::warn!(what = what.as_str(), %device, count = n, "refused: {detail}{more}");
        }
    }

    /// What an input to the engine answered, for the device messages that answer nobody: refusals are counted.
    fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Refused(refusal) => {
                if refusal.what == Refused::HardwareLevelChange {
                    self.metrics.level_changes.with_label_values(&["false"]).inc();
                }
                self.refused(refusal);
            }
            Reply::LevelChanged { device, from, to } => {
                self.metrics.level_changes.with_label_values(&["true"]).inc();
                tracing::warn!(%device, "the hardware probe says level {to}, no longer {from}: the level is changed");
            }
            _ => {}
        }
    }

    /// Applies a device's report; a final outcome heard for the first time is measured.
    fn apply_report(&mut self, device: bindwave_proto::wire::DeviceId, report: Report, batch: &mut Batch) {
        let (job_id, download) = (JobId::parse(&report.job_id, &device), report.download);
        let first = batch.effects.persist.len();
        self.apply(Input::Report(device, report), batch);
        for record in &batch.effects.persist[first..] {
            if let Record::Job(job) = record {
                if Some(job.id()) == job_id && job.phase.is_final() && job.phase != JobPhase::TimedOut {
                    self.metrics.job_finished(job, download.as_ref());
                }
            }
        }
    }

    /// Applies an input that answers nobody.
    fn apply(&mut self, input: Input, batch: &mut Batch) {
        match self.engine.handle(input, now_millis()) {
            Ok((reply, fx)) => {
                batch.effects.extend(fx);
                self.on_reply(reply);
            }
            Err(e) => tracing::warn!("input refused: {e}"),
        }
    }

    /// The command as it goes out: signed for its device, valid for its own time limit or `command_ttl`.
    fn sign(&self, device: &DeviceId, command: &Command) -> CommandMessage {
        // The phones compare the expiry with their own clocks. After a jump of the wall clock, either clock may be
        // the true one: the later of the two never sends a command that has expired by the true time.
        let expires_at = expiry(command, self.command_ttl, now_millis().max(crate::clock::wall_millis()));
        let signature = self.signer.sign(&signed_message(device, command, expires_at));
        CommandMessage { command: command.clone(), expires_at: Some(expires_at), signature: Some(signature) }
    }

    async fn commit(&mut self, batch: Batch, owed: &mut Effects) -> Result<(), ControllerError> {
        let Batch { effects, replies, queries, backups, connected } = batch;
        if connected {
            for kind in [TopicKind::Presence, TopicKind::Reports, TopicKind::Hello] {
                self.outbox.push_front(Outgoing::Subscribe(kind));
            }
        }
        let Effects { persist, publish, measure } = effects;
        for record in &persist {
            log_record(record);
            if let Record::Rollout(r) = record {
                self.metrics.rollout_known(&r.id);
            }
        }
        // Webhook deliveries go into the store's database with the audit entries they come from: one flush.
        let mut notified = false;
        if let Some((hooks, queue, _)) = &self.webhooks {
            for record in &persist {
                let Record::Audit(entry) = record else { continue };
                let rollout = entry.rollout.and_then(|r| self.engine.rollout(&r));
                for n in crate::webhooks::event::notifications(entry, rollout) {
                    queue.enqueue(&hooks.urls, &n, entry.at)?;
                    notified = true;
                }
            }
        }
        if !persist.is_empty() {
            let timer = self.metrics.store_flush_seconds.start_timer();
            self.store.put(&persist)?;
            self.store.flush().await?;
            timer.observe_duration();
            self.metrics.store_flushes.inc();
            self.metrics.store_records_written.inc_by(persist.len() as u64);
            // Durable: those who follow the changes may read them now.
            self.changes.send_modify(|n| *n += 1);
        }
        if let (true, Some((_, _, wake))) = (notified, &self.webhooks) {
            wake.notify_one();
        }
        // Durable: now the world may hear of it.
        let owed_now = if connected { std::mem::take(&mut owed.publish) } else { Vec::new() };
        self.outbox
            .extend(owed_now.into_iter().chain(publish).map(|(device, command)| Outgoing::Command(device, command)));
        self.send_outbox();
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        for m in measure {
            self.take_measurement(m);
        }
        for q in queries {
            q(&self.engine);
        }
        // After the flush and before the next batch: the store holds what the engine knows, and only this task
        // writes it.
        for (to, reply) in backups {
            let _ = reply.send(self.export(to));
        }
        Ok(())
    }

    /// Measures an analysis query in a task of its own, and hands the result back to the core.
    fn take_measurement(&self, m: crate::engine::Measure) {
        let tx = self.measured.0.clone();
        let prometheus = self.prometheus.clone();
        tokio::spawn(async move {
            let result = match &prometheus {
                Some(p) => p.measure(&m.query).await,
                None => crate::engine::Measured::Failed("no prometheus_url is configured".into()),
            };
            tracing::info!(rollout = %m.rollout, wave = m.wave + 1, query = %m.query, ?result, "analysis measured");
            let input = Input::Measured { rollout: m.rollout, wave: m.wave, analysis: m.analysis, result };
            let _ = tx.send(input).await;
        });
    }

    /// Writes the store's records into the file `to`, and hands it back.
    fn export(&self, to: std::fs::File) -> Result<(Exported, std::fs::File), ControllerError> {
        let mut out = std::io::BufWriter::new(to);
        let exported = self.store.export(&mut out)?;
        let file = out.into_inner().map_err(|e| ControllerError::Backup {
            path: self.store.dir().to_path_buf(),
            detail: format!("cannot write the store's records for a backup: {}", e.error()),
        })?;
        Ok((exported, file))
    }

    /// Hands the link as much of the outbox as it takes now, in order; the rest waits for the next turn.
    fn send_outbox(&mut self) {
        while let Some(next) = self.outbox.front() {
            let handed = match next {
                Outgoing::Subscribe(kind) => self.client.try_subscribe(kind.filter_all(), QoS::AtLeastOnce),
                Outgoing::Command(device, command) => {
                    let topic = TopicKind::Commands.topic(device);
                    let payload = match self.sign(device, command).to_json() {
                        Ok(p) => p,
                        Err(e) => {
                            // It can never be sent: say so, and go on with the rest.
                            self.metrics.publish_errors.inc();
                            tracing::error!(%device, "{e}");
                            self.outbox.pop_front();
                            continue;
                        }
                    };
                    let sent = self.client.try_publish(topic, QoS::AtLeastOnce, false, payload);
                    if sent.is_ok() {
                        let kind: &'static str = CommandKind::from(command).into();
                        self.metrics.messages_sent.with_label_values(&[kind]).inc();
                    }
                    sent
                }
            };
            match handed {
                Ok(()) => drop(self.outbox.pop_front()),
                Err(e) => {
                    if self.outbox.len() % 1000 == 1 {
                        tracing::debug!(waiting = self.outbox.len(), "the MQTT link is busy ({e}); holding commands");
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bindwave_proto::wire::UpdateCommand;

    use super::*;

    #[test]
    fn a_command_expires_after_its_time_limit_or_the_ttl() {
        let update = |timeout_secs| {
            Command::Update(UpdateCommand {
                job_id: "r1-a".into(),
                rollout_id: "r1".into(),
                url: "u".into(),
                size: 1,
                sha256: "00".into(),
                override_compat: false,
                use_defaults: false,
                timeout_secs,
                install_windows: Vec::new(),
            })
        };
        let now = 1_000_000_500; // milliseconds
        assert_eq!(expiry(&update(Some(1800)), DEFAULT_COMMAND_TTL, now), 1_000_000 + 1800);
        assert_eq!(expiry(&update(None), DEFAULT_COMMAND_TTL, now), 1_000_000 + 86_400);
        assert_eq!(expiry(&Command::Ack { job_id: "j".into() }, Duration::from_secs(60), now), 1_000_060);
        assert_eq!(expiry(&update(Some(0)), DEFAULT_COMMAND_TTL, now), 1_000_001, "never already expired");
    }
}
