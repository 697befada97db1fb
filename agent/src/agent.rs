//! The agent's driver: one task that feeds the [`Core`] its inputs and carries out the actions it returns.
//!
//! The inputs come from the MQTT link, from the running job (through a channel) and from a timer that repeats
//! unacknowledged final reports. The driver owns what does IO: the MQTT client, the journal's file, the slots,
//! the indicator, and the job's task ([`crate::job`]). It decides nothing itself.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bindwave_proto::wire::{CommandMessage, DeviceId, Hello, JobState, Presence, TopicKind, UpdateCommand};
use bindwave_proto::DeviceProfile;
use rumqttc::{AsyncClient, LastWill, QoS};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use crate::config::{AgentConfig, Identity};
use crate::core::{Action, CommandTrust, Core, Found, Input, Message, Refusal, Refusals};
use crate::indicator::{Indicator, Status};
use crate::job::{check_health, job_span, Job, JobEvent};
use crate::journal::{AwaitingHealth, Change, Journal};
use crate::slots::Slots;
use crate::storage::Durability;
use crate::transport::Transport;
use crate::trust::ReleaseTrust;
use crate::AgentError;
use bindwave_link::{LinkEvent, LinkOptions, LinkSizes};

/// One phone's agent, built and not yet running. Boxed: a future that runs it holds it until it starts (a
/// simulated fleet keeps one a phone).
pub struct Agent(Box<Parts>);

struct Parts {
    config: AgentConfig,
    identity: Identity,
    release: ReleaseTrust,
    trust: CommandTrust,
    transport: Option<Transport>,
    /// What the simulator changes; a phone runs with the defaults.
    durability: Durability,
    link_sizes: Option<LinkSizes>,
    observer: Option<mpsc::UnboundedSender<(JobState, Option<u8>)>>,
}

impl Agent {
    /// An agent for a checked config and the identity resolved while checking it (the probe is not run again).
    /// It reads the pinned release keys and controller keys (and their files); without one of each it refuses
    /// to start, unless the config asks for a lab (`[trust] insecure_lab`).
    pub fn new(config: AgentConfig, identity: Identity) -> Result<Self, AgentError> {
        for url in std::iter::once(&config.broker.url).chain(&config.broker.fallback_urls) {
            bindwave_link::BrokerUrl::parse(url)?;
        }
        let release = config.trust.release()?;
        let keys = config.trust.controller()?;
        let trust = CommandTrust::new(keys, config.device_id.clone(), config.trust.insecure_lab);
        Ok(Agent(Box::new(Parts {
            config,
            identity,
            release,
            trust,
            transport: None,
            durability: Durability::Full,
            link_sizes: None,
            observer: None,
        })))
    }

    /// Shares one set of download clients among many agents (the demo runs a whole fleet in one process).
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.0.transport = Some(transport);
        self
    }

    /// Writes the state without syncing it: for simulated phones, many to a disk (see [`Durability`]). A phone's
    /// config cannot ask for this.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.0.durability = durability;
        self
    }

    /// Other sizes for the MQTT link's queues and buffers (a simulated fleet runs thousands of links).
    pub fn with_link_sizes(mut self, sizes: LinkSizes) -> Self {
        self.0.link_sizes = Some(sizes);
        self
    }

    /// Tells `observer` every state the phone shows (what its indicator shows), in order: a simulator watches
    /// for the moment to cut a phone's power.
    pub fn with_observer(mut self, observer: mpsc::UnboundedSender<(JobState, Option<u8>)>) -> Self {
        self.0.observer = Some(observer);
        self
    }

    pub fn device_id(&self) -> &DeviceId {
        &self.0.config.device_id
    }

    /// Runs until `shutdown` completes. Returns early only if the state directory is unusable. Dropped before
    /// then, it stops at once with everything it runs (its link and its job), as a phone that loses power.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        // What is set up is not held across an await: the future a phone's whole life runs in stays small (a
        // simulated fleet keeps one a phone).
        let Started { mut driver, found, events, jobs, id, offline } = self.start()?;
        let result = driver.run(found, events, jobs, shutdown).await;
        // A clean goodbye: the last will only fires when the broker loses us.
        let _ = driver.client.publish(TopicKind::Presence.topic(&id), QoS::AtLeastOnce, true, offline).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), driver.client.disconnect()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        result
    }

    /// Opens the state, connects the link and builds the driver, with nothing awaited.
    fn start(self) -> Result<Started, AgentError> {
        let Parts { config, identity, release, trust, transport, durability, link_sizes, observer } = *self.0;
        if release.insecure_lab() {
            tracing::warn!(
                device = %config.device_id,
                "INSECURE LAB MODE ([trust] insecure_lab = true): this phone installs UNSIGNED binds, acts on \
                 UNSIGNED commands (never with their override) and may talk plain MQTT; never run a real phone \
                 like this"
            );
        }
        let ids: Vec<String> = release.keys().ids().map(|id| id.to_string()).collect();
        tracing::info!(device = %config.device_id, "release keys pinned: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") });
        let ids: Vec<String> = trust.keys().ids().map(|id| id.to_string()).collect();
        tracing::info!(device = %config.device_id, "controller keys pinned: {}", if ids.is_empty() { "none".into() } else { ids.join(", ") });
        let transport = match transport {
            Some(t) => t,
            None => Transport::new(config.download.ca_file.as_deref())?,
        };
        let state_dir = config.state_dir.clone();
        std::fs::create_dir_all(&state_dir)
            .map_err(|source| AgentError::StateDir { path: state_dir.clone(), source })?;
        let download_dir = state_dir.join("downloads");
        std::fs::create_dir_all(&download_dir)
            .map_err(|source| AgentError::StateDir { path: download_dir.clone(), source })?;
        let slots = Slots::open(&state_dir, durability)?;
        let journal = Journal::open(&state_dir, durability)?;
        let running = slots.running_version(&config.software_version)?;
        remove_stale_downloads(&download_dir, journal.records().current());
        let active = slots.active()?;
        let found = Found { other: active.as_ref().and_then(|a| slots.record_of(a.slot.other())), active };

        let id = config.device_id.clone();
        let offline = Presence { online: false }.to_json()?;
        let mut opts = LinkOptions::new(&config.broker.url, id.as_str());
        if let Some(sizes) = link_sizes {
            opts = opts.with_sizes(sizes);
        }
        opts.fallback_urls = config.broker.fallback_urls.clone();
        // A command is acknowledged once it is journaled (or refused): a power cut before that gets it again.
        opts.manual_acks = true;
        opts.username = config.broker.username.clone();
        opts.password = config.broker.password.clone();
        opts.tls = config.broker.tls();
        opts.last_will = Some(LastWill::new(TopicKind::Presence.topic(&id), offline.clone(), QoS::AtLeastOnce, true));
        let link = bindwave_link::connect(opts)?;

        let (job_tx, job_rx) = mpsc::unbounded_channel();
        let indicator = Indicator::start(config.indicator.clone(), state_dir.join("status.json"));
        indicator.show(Status::idle());
        let profile = config.profile(&identity);
        let hello = Hello {
            device_id: id.clone(),
            part_number: config.part_number.as_str().into(),
            hardware_level: identity.hardware_level,
            hardware_level_source: identity.source,
            hardware_level_conflict: identity.conflict,
            software_version: running,
            minimum_software_version: profile.minimum_software_version.clone(),
            agent_version: crate::AGENT_VERSION.into(),
            model: config.model.as_deref().map(Into::into),
            labels: config.labels.iter().map(|l| l.as_str().into()).collect(),
            heartbeat_secs: Some(u32::try_from(config.heartbeat_secs).unwrap_or(u32::MAX)),
            timezone: config.timezone.as_deref().map(Into::into),
        };
        let driver = Driver {
            core: Core::new(hello, config.health.configured()),
            trust,
            refusals: Refusals::default(),
            profile,
            config,
            identity,
            release,
            transport,
            slots,
            journal,
            download_dir,
            client: link.client.clone(),
            job_tx,
            indicator,
            unsubscribed: false,
            durability,
            observer,
            tasks: JoinSet::new(),
            cancel: None,
            link_task: link.task,
        };
        Ok(Started { driver, found, events: link.events, jobs: job_rx, id, offline })
    }
}

/// An agent set up, ready to run.
struct Started {
    driver: Driver,
    found: Found,
    events: mpsc::Receiver<LinkEvent>,
    jobs: mpsc::UnboundedReceiver<JobEvent>,
    id: DeviceId,
    offline: Vec<u8>,
}

/// Deletes the downloads of every job but the one in hand (a partial file and its validator).
fn remove_stale_downloads(download_dir: &std::path::Path, current: Option<&UpdateCommand>) {
    let keep = current.map(|c| crate::fetch::download_path(download_dir, &c.job_id));
    if let Ok(entries) = std::fs::read_dir(download_dir) {
        for e in entries.flatten() {
            let path = e.path();
            if keep.as_ref().is_none_or(|k| path != *k && path != k.with_extension("validator")) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The core and everything its actions are carried out with.
struct Driver {
    core: Core,
    /// Which commands are acted on, and the count of those that are not.
    trust: CommandTrust,
    refusals: Refusals,
    config: AgentConfig,
    identity: Identity,
    release: ReleaseTrust,
    profile: DeviceProfile,
    transport: Transport,
    slots: Slots,
    journal: Journal,
    download_dir: PathBuf,
    client: AsyncClient,
    job_tx: mpsc::UnboundedSender<JobEvent>,
    indicator: Indicator,
    /// A subscription is owed to the broker: the link's request queue was full when it was due.
    unsubscribed: bool,
    durability: Durability,
    observer: Option<mpsc::UnboundedSender<(JobState, Option<u8>)>>,
    /// The job's task and the health check's: they stop with the driver.
    tasks: JoinSet<()>,
    /// The running job's id and its cancel flag, which it reads before each step of its download and before
    /// it installs.
    cancel: Option<(String, tokio::sync::watch::Sender<bool>)>,
    link_task: JoinHandle<()>,
}

impl Drop for Driver {
    /// The link stops with the driver, as the job does with `tasks`: an agent that stops leaves nothing running.
    fn drop(&mut self) {
        self.link_task.abort();
    }
}

impl Driver {
    async fn run(
        &mut self,
        found: Found,
        mut events: mpsc::Receiver<LinkEvent>,
        mut jobs: mpsc::UnboundedReceiver<JobEvent>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        self.handle(Input::Restarted(found)).await?;
        let mut resend = tokio::time::interval(Duration::from_secs(self.config.report_retry_secs.max(1)));
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let beat = Duration::from_secs(self.config.heartbeat_secs.max(1));
        // The first beat one period after the start: the connect publishes the presence itself.
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                Some(event) = events.recv() => self.on_link(event).await?,
                Some(job) = jobs.recv() => self.on_job(job).await?,
                _ = resend.tick() => self.handle(Input::RetryTick).await?,
                _ = heartbeat.tick() => self.handle(Input::HeartbeatTick).await?,
                _ = tokio::time::sleep(Duration::from_millis(50)), if self.unsubscribed => self.subscribe(),
            }
        }
    }

    async fn on_link(&mut self, event: LinkEvent) -> Result<(), AgentError> {
        match event {
            LinkEvent::Connected => self.handle(Input::Connected).await,
            LinkEvent::Disconnected(why) => self.handle(Input::Disconnected(why)).await,
            LinkEvent::Message { topic, payload, delivery } => {
                let handled = self.on_message(&topic, &payload).await;
                // Acted on (journaled, refused or not ours): the broker may forget it. When the journal could not
                // be written, it is not acknowledged, and the agent stops.
                if let (Ok(()), Some(delivery)) = (&handled, delivery) {
                    delivery.ack(&self.client);
                }
                handled
            }
        }
    }

    async fn on_message(&mut self, topic: &str, payload: &[u8]) -> Result<(), AgentError> {
        if !topic_is(topic, &self.config.device_id, TopicKind::Commands) {
            return Ok(());
        }
        let now = SystemTime::now();
        let judged = match CommandMessage::from_json(payload) {
            Ok(message) => self.trust.judge(message, now).map_err(|why| (why, None)),
            Err(e) => Err((Refusal::Malformed, Some(e.to_string()))),
        };
        match judged {
            Ok(trusted) => self.handle(Input::Command(trusted.command)).await,
            Err((why, detail)) => {
                self.refuse(why, detail, now);
                Ok(())
            }
        }
    }

    /// A command not acted on: counted in `status.json`, logged once a minute per reason at most.
    fn refuse(&mut self, why: Refusal, detail: Option<String>, now: SystemTime) {
        if let Some(n) = self.refusals.note(why, now) {
            let detail = detail.unwrap_or_else(|| match why {
                Refusal::Malformed => "malformed command message".into(),
                Refusal::Unsigned => "it is not signed".into(),
                Refusal::UntrustedKey => {
                    "it is signed by a key this phone does not pin ([trust] controller_keys)".into()
                }
                Refusal::SignatureInvalid => {
                    "its signature does not verify (altered, forged, or meant for another phone)".into()
                }
                Refusal::Expired => "it has expired (or this phone's clock is wrong)".into(),
            });
            let since =
                if n > 1 { format!("; {n} refused as {} in the last minute", why.as_str()) } else { String::new() };
            tracing::warn!(device = %self.config.device_id, reason = why.as_str(), count = n,
                "dropping a command: {detail}{since}");
        }
        self.indicator.refused(self.refusals.counts().clone());
    }

    async fn on_job(&mut self, event: JobEvent) -> Result<(), AgentError> {
        match event {
            JobEvent::Progress(report) => self.handle(Input::Progress(*report)).await,
            JobEvent::Installed { pending, ack } => {
                self.handle(Input::Installed(*pending)).await?;
                // Journaled: the job may go on to the restart.
                let _ = ack.send(());
                Ok(())
            }
            JobEvent::Done(report) => self.handle(Input::Done(*report)).await,
        }
    }

    /// Has the core decide on `input`, then carries out its actions in order. A journal that cannot be written
    /// stops the agent (an outcome it cannot keep is one it could lose), except for the record of a job begun:
    /// that job goes on, and is only not resumed after a restart.
    async fn handle(&mut self, input: Input) -> Result<(), AgentError> {
        let actions = self.core.handle(input, self.journal.records_mut(), SystemTime::now());
        for action in actions {
            match action {
                Action::Persist(change) => match self.journal.save() {
                    Ok(()) => {}
                    Err(e) if matches!(change, Change::Begin(_) | Change::Downloaded(_)) => {
                        tracing::error!("cannot record the job in hand: {e}")
                    }
                    Err(e) => return Err(e),
                },
                Action::Subscribe => {
                    self.unsubscribed = true;
                    self.subscribe();
                }
                Action::Publish(message) => self.publish(&message),
                Action::Show(report) => {
                    if let Some(observer) = &self.observer {
                        let _ = observer.send((report.state, report.progress));
                    }
                    self.indicator.show(Status::of(&report))
                }
                Action::Start(cmd) => self.start(cmd),
                Action::CheckHealth(pending) => self.check_health(pending),
                Action::Cancel(job_id) => {
                    if let Some((_, stop)) = self.cancel.as_ref().filter(|(j, _)| *j == job_id) {
                        let _ = stop.send(true);
                    }
                }
            }
        }
        Ok(())
    }

    /// Asks for the command topic without waiting on the link (a driver that waits on a link that waits on
    /// it would stop both); a request that does not fit now is tried again on the next turn.
    fn subscribe(&mut self) {
        let commands = TopicKind::Commands.topic(&self.config.device_id);
        match self.client.try_subscribe(commands, QoS::AtLeastOnce) {
            Ok(()) => self.unsubscribed = false,
            Err(e) => tracing::debug!("subscribing later: {e}"),
        }
    }

    /// Never waits: while the broker is unreachable the loop (and the job) go on. What must arrive is sent
    /// again anyway: final reports from the journal until acknowledged, hello and presence on every connect.
    fn publish(&self, message: &Message) {
        let topic = message.kind().topic(&self.config.device_id);
        let payload = match message.to_json() {
            Ok(p) => p,
            Err(e) => return tracing::error!("not published: {e}"),
        };
        if let Err(e) = self.client.try_publish(topic, QoS::AtLeastOnce, message.retain(), payload) {
            tracing::debug!("not published now ({e}); it is sent again later if it matters");
        }
    }

    /// Spawns the job's task; its time limit counts from when the journal first recorded it.
    fn start(&mut self, cmd: UpdateCommand) {
        let job = Job {
            limit: self.config.download.limit_for(&cmd),
            started: self.journal.current_since().unwrap_or_else(SystemTime::now),
            identity: self.identity.clone(),
            access: self.config.access.clone(),
            installer: self.config.installer.clone(),
            health: self.config.health.clone(),
            factory: self.config.software_version.clone(),
            transport: self.transport.clone(),
            policy: self.config.download.policy(),
            profile: self.profile.clone(),
            release: self.release.clone(),
            slots: self.slots.clone(),
            download_dir: self.download_dir.clone(),
            durability: self.durability,
            running: self.core.running().clone(),
            tx: self.job_tx.clone(),
            cancel: {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                self.cancel = Some((cmd.job_id.clone(), stop));
                stopped
            },
        };
        let span = job_span(&cmd.job_id, &cmd.rollout_id, &self.config.device_id);
        self.spawn(job.run(cmd).instrument(span));
    }

    /// Spawns the health check of an install made before the restart.
    fn check_health(&mut self, pending: AwaitingHealth) {
        let (health, slots, factory, tx) =
            (self.config.health.clone(), self.slots.clone(), self.config.software_version.clone(), self.job_tx.clone());
        let rollout_id = self.journal.current().filter(|c| c.job_id == pending.job_id).map(|c| c.rollout_id.clone());
        let span = job_span(&pending.job_id, rollout_id.as_deref().unwrap_or(""), &self.config.device_id);
        self.spawn(
            async move {
                let report = check_health(&health, &slots, &pending, &factory).await;
                let _ = tx.send(JobEvent::Done(Box::new(report)));
            }
            .instrument(span),
        );
    }

    /// Runs a job's work beside the loop, owned by the driver; tasks that ended are let go first.
    fn spawn(&mut self, work: impl Future<Output = ()> + Send + 'static) {
        while self.tasks.try_join_next().is_some() {}
        self.tasks.spawn(work);
    }
}

fn topic_is(topic: &str, id: &DeviceId, kind: TopicKind) -> bool {
    bindwave_proto::wire::parse_topic(topic).is_some_and(|(d, k)| &d == id && k == kind)
}
