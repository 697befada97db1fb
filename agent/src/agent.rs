//! The agent's event loop: one task that owns the job queue and the journal, fed by the MQTT link, by the
//! running job, and by a timer that repeats unacknowledged final reports.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bindwave_proto::wire::{Command, DeviceId, Hello, JobState, Presence, Reason, Report, TopicKind, UpdateCommand};
use bindwave_proto::{DeviceProfile, SoftwareVersion};
use rumqttc::{AsyncClient, LastWill, QoS};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::config::{AgentConfig, Identity};
use crate::fetch::{fetch, Fetched};
use crate::indicator::{Indicator, Status};
use crate::journal::{AwaitingHealth, Journal};
use crate::link::{self, LinkEvent, LinkOptions};
use crate::slots::Slots;
use crate::transport::Transport;
use crate::AgentError;

pub struct Agent {
    config: AgentConfig,
    identity: Identity,
    transport: Option<Transport>,
}

/// What the running job tells the loop.
enum JobEvent {
    Progress(Report),
    /// Installed and switched: journal it (then acknowledge) before the restart.
    Installed {
        pending: AwaitingHealth,
        ack: oneshot::Sender<()>,
    },
    Done(Report),
}

impl Agent {
    /// An agent for a checked config and the identity resolved while checking it (the probe is not run again).
    pub fn new(config: AgentConfig, identity: Identity) -> Result<Self, AgentError> {
        link::parse_broker_url(&config.broker.url)?;
        Ok(Agent { config, identity, transport: None })
    }

    /// Shares one set of download clients among many agents (the demo runs a whole fleet in one process).
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    pub fn device_id(&self) -> &DeviceId {
        &self.config.device_id
    }

    /// Runs until `shutdown` completes. Returns early only if the state directory is unusable.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let Agent { config, identity, transport } = self;
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
        let slots = Slots::open(&state_dir)?;
        let mut journal = Journal::open(&state_dir)?;
        let running = slots.running_version(&config.software_version)?;
        let resumed = recover(&mut journal, &slots, &running, &download_dir, config.health.configured())?;

        let id = config.device_id.clone();
        let offline = Presence { online: false }.to_json();
        let mut opts = LinkOptions::new(&config.broker.url, id.as_str());
        opts.username = config.broker.username.clone();
        opts.password = config.broker.password.clone();
        opts.last_will = Some(LastWill::new(TopicKind::Presence.topic(&id), offline.clone(), QoS::AtLeastOnce, true));
        let link = link::connect(opts)?;

        let (job_tx, job_rx) = mpsc::unbounded_channel();
        let indicator = Indicator::start(config.indicator.clone(), state_dir.join("status.json"));
        indicator.show(Status::idle());
        let mut state = Loop {
            profile: config.profile(&identity),
            config,
            identity,
            transport,
            slots,
            journal,
            running,
            download_dir,
            client: link.client.clone(),
            current: None,
            queue: VecDeque::new(),
            job_tx,
            connected: false,
            indicator,
        };
        match resumed {
            Resume::Job(cmd) => {
                tracing::info!(device = %state.config.device_id, job = %cmd.job_id, "resuming the job in hand before the restart");
                state.queue.push_back(cmd);
                state.start_next().await;
            }
            Resume::Health(pending) => {
                tracing::info!(device = %state.config.device_id, job = %pending.job_id, "started after an install: checking health");
                state.current = Some(pending.job_id.clone());
                let (health, slots, factory, tx) = (
                    state.config.health.clone(),
                    state.slots.clone(),
                    state.config.software_version.clone(),
                    state.job_tx.clone(),
                );
                let rollout_id =
                    state.journal.current().filter(|c| c.job_id == pending.job_id).map(|c| c.rollout_id.clone());
                let span = job_span(&pending.job_id, rollout_id.as_deref().unwrap_or(""), &state.config.device_id);
                tokio::spawn(
                    async move {
                        let report = check_health(&health, &slots, &pending, &factory).await;
                        let _ = tx.send(JobEvent::Done(report));
                    }
                    .instrument(span),
                );
            }
            Resume::Nothing => {}
        }
        let result = state.run(link.events, job_rx, shutdown).await;
        // A clean goodbye: the last will only fires when the broker loses us.
        let _ = state.client.publish(TopicKind::Presence.topic(&id), QoS::AtLeastOnce, true, offline).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), state.client.disconnect()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        link.task.abort();
        result
    }
}

/// What to pick up after a restart.
enum Resume {
    Nothing,
    /// A job in hand, not installed yet: go on with it (its download resumes).
    Job(UpdateCommand),
    /// Installed and switched: the health check decides.
    Health(AwaitingHealth),
}

/// Picks up after a restart: an install waiting for its health check gets it; a job found installed is
/// finished (or checked); a job in hand is resumed; downloads of no job in hand are deleted.
fn recover(
    journal: &mut Journal,
    slots: &Slots,
    running: &SoftwareVersion,
    download_dir: &std::path::Path,
    health: bool,
) -> Result<Resume, AgentError> {
    let current = journal.current().cloned();
    let keep = current.as_ref().map(|c| crate::fetch::download_path(download_dir, &c.job_id));
    if let Ok(entries) = std::fs::read_dir(download_dir) {
        for e in entries.flatten() {
            let path = e.path();
            if keep.as_ref().is_none_or(|k| path != *k && path != k.with_extension("validator")) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    if let Some(pending) = journal.awaiting_health().cloned() {
        if journal.finished(&pending.job_id).is_none() {
            return Ok(Resume::Health(pending));
        }
    }
    let Some(cmd) = current else { return Ok(Resume::Nothing) };
    if journal.finished(&cmd.job_id).is_some() {
        return Ok(Resume::Nothing);
    }
    let installed = slots.active()?.filter(|a| a.job_id.as_deref() == Some(cmd.job_id.as_str()));
    if let Some(active) = installed {
        if health {
            // The power went between the switch and the journal: what ran before is in the other slot's record.
            let previous = slots.record_of(active.slot.other());
            return Ok(Resume::Health(AwaitingHealth {
                job_id: cmd.job_id,
                installed: active,
                previous,
                override_used: false,
            }));
        }
        // The power went after the switch and before the report: the job succeeded.
        let report = Report {
            job_id: cmd.job_id.clone(),
            state: JobState::Succeeded,
            progress: None,
            running_version: Some(running.clone()),
            reason: None,
            override_used: false,
            download: None,
        };
        journal.record_final(report)?;
        return Ok(Resume::Nothing);
    }
    Ok(Resume::Job(cmd))
}

struct Loop {
    config: AgentConfig,
    identity: Identity,
    profile: DeviceProfile,
    transport: Transport,
    slots: Slots,
    journal: Journal,
    running: SoftwareVersion,
    download_dir: PathBuf,
    client: AsyncClient,
    current: Option<String>,
    queue: VecDeque<UpdateCommand>,
    job_tx: mpsc::UnboundedSender<JobEvent>,
    connected: bool,
    indicator: Indicator,
}

impl Loop {
    async fn run(
        &mut self,
        mut events: mpsc::UnboundedReceiver<LinkEvent>,
        mut jobs: mpsc::UnboundedReceiver<JobEvent>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let mut resend = tokio::time::interval(Duration::from_secs(self.config.report_retry_secs.max(1)));
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                Some(event) = events.recv() => self.on_link(event).await?,
                Some(job) = jobs.recv() => self.on_job(job).await?,
                _ = resend.tick() => {
                    if self.connected {
                        self.publish_unacked().await;
                    }
                }
            }
        }
    }

    async fn on_link(&mut self, event: LinkEvent) -> Result<(), AgentError> {
        match event {
            LinkEvent::Connected => {
                self.connected = true;
                tracing::info!(device = %self.config.device_id, "connected to the broker");
                let commands = TopicKind::Commands.topic(&self.config.device_id);
                if let Err(e) = self.client.subscribe(commands, QoS::AtLeastOnce).await {
                    tracing::warn!("subscribe failed: {e}");
                }
                self.publish_hello().await;
                self.publish(TopicKind::Presence, Presence { online: true }.to_json(), true).await;
                self.publish_unacked().await;
            }
            LinkEvent::Disconnected(why) => {
                if self.connected {
                    tracing::warn!(device = %self.config.device_id, "lost the broker: {why}; reconnecting");
                }
                self.connected = false;
            }
            LinkEvent::Message { topic, payload } => {
                if link_topic_is(&topic, &self.config.device_id, TopicKind::Commands) {
                    match Command::from_json(&payload) {
                        Ok(Command::Update(cmd)) => self.on_update(cmd).await?,
                        Ok(Command::Ack { job_id }) => {
                            self.journal.ack(&job_id)?;
                        }
                        Err(e) => tracing::warn!("dropping a command: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    async fn on_update(&mut self, cmd: UpdateCommand) -> Result<(), AgentError> {
        if self.current.as_deref() == Some(&cmd.job_id) || self.queue.iter().any(|q| q.job_id == cmd.job_id) {
            return Ok(()); // a repeat of a job in hand
        }
        if self.journal.finished(&cmd.job_id).is_some() {
            // The controller asks again, so it lacks the outcome: repeat it rather than run the job twice.
            self.journal.resend(&cmd.job_id)?;
            self.publish_unacked().await;
            return Ok(());
        }
        tracing::info!(device = %self.config.device_id, job = %cmd.job_id, url = %cmd.url, "update command");
        self.queue.push_back(cmd);
        self.start_next().await;
        Ok(())
    }

    async fn start_next(&mut self) {
        if self.current.is_some() {
            return;
        }
        let Some(cmd) = self.queue.pop_front() else { return };
        if let Err(e) = self.journal.begin(&cmd) {
            tracing::error!("cannot record the job in hand: {e}");
        }
        self.current = Some(cmd.job_id.clone());
        let received = progress(&cmd.job_id, JobState::Received, None);
        self.indicator.show(Status::of(&received));
        self.send_report(&received).await;
        let started = self.journal.current_since().unwrap_or_else(std::time::SystemTime::now);
        let job = Job {
            limit: self.config.download.limit_for(&cmd),
            started,
            identity: self.identity.clone(),
            access: self.config.access.clone(),
            installer: self.config.installer.clone(),
            health: self.config.health.clone(),
            factory: self.config.software_version.clone(),
            transport: self.transport.clone(),
            policy: self.config.download.policy(),
            profile: self.profile.clone(),
            slots: self.slots.clone(),
            download_dir: self.download_dir.clone(),
            running: self.running.clone(),
            tx: self.job_tx.clone(),
        };
        let span = job_span(&cmd.job_id, &cmd.rollout_id, &self.config.device_id);
        tokio::spawn(job.run(cmd).instrument(span));
    }

    async fn on_job(&mut self, event: JobEvent) -> Result<(), AgentError> {
        match event {
            JobEvent::Progress(report) => {
                self.indicator.show(Status::of(&report));
                self.send_report(&report).await
            }
            JobEvent::Installed { pending, ack } => {
                self.journal.await_health(pending)?;
                let _ = ack.send(());
            }
            JobEvent::Done(report) => {
                tracing::info!(device = %self.config.device_id, job = %report.job_id, state = %report.state,
                    reason = report.reason.as_ref().map(|r| r.to_string()), "job finished");
                self.journal.record_final(report.clone())?;
                self.indicator.show(Status::of(&report));
                // The outcome first: a hello while the controller still thinks the job runs would make it
                // send the command again.
                self.send_report(&report).await;
                if let Some(v) = &report.running_version {
                    if *v != self.running {
                        self.running = v.clone();
                        self.publish_hello().await;
                    }
                }
                self.current = None;
                self.start_next().await;
            }
        }
        Ok(())
    }

    async fn publish_hello(&self) {
        let hello = Hello {
            device_id: self.config.device_id.clone(),
            part_number: self.config.part_number.clone(),
            hardware_level: self.identity.hardware_level,
            hardware_level_source: self.identity.source,
            hardware_level_conflict: self.identity.conflict,
            software_version: self.running.clone(),
            minimum_software_version: self.profile.minimum_software_version.clone(),
            agent_version: crate::AGENT_VERSION.to_string(),
            model: self.config.model.clone(),
            labels: self.config.labels.clone(),
        };
        self.publish(TopicKind::Hello, hello.to_json(), true).await;
    }

    async fn publish_unacked(&self) {
        for r in self.journal.unacked() {
            self.send_report(r).await;
        }
    }

    async fn send_report(&self, report: &Report) {
        self.publish(TopicKind::Reports, report.to_json(), false).await;
    }

    /// Never waits: while the broker is unreachable the loop (and the job) go on. What must arrive is sent
    /// again anyway: final reports from the journal until acknowledged, hello and presence on every connect.
    async fn publish(&self, kind: TopicKind, payload: Vec<u8>, retain: bool) {
        let topic = kind.topic(&self.config.device_id);
        if let Err(e) = self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            tracing::debug!("not published now ({e}); it is sent again later if it matters");
        }
    }
}

/// The span a job runs in: every line logged about the job carries its id, its rollout and the phone, so one
/// phone's story can be followed in a log shipper (`--log-format json`).
fn job_span(job_id: &str, rollout_id: &str, device: &DeviceId) -> tracing::Span {
    tracing::info_span!("job", job_id = %job_id, rollout_id = %rollout_id, device = %device)
}

fn link_topic_is(topic: &str, id: &DeviceId, kind: TopicKind) -> bool {
    bindwave_proto::wire::parse_topic(topic).is_some_and(|(d, k)| &d == id && k == kind)
}

fn progress(job_id: &str, state: JobState, percent: Option<u8>) -> Report {
    Report {
        job_id: job_id.to_string(),
        state,
        progress: percent,
        running_version: None,
        reason: None,
        override_used: false,
        download: None,
    }
}

/// One job, run in a task of its own so the loop stays responsive.
struct Job {
    /// The download and verification must end within `limit` of `started`.
    limit: Duration,
    started: std::time::SystemTime,
    identity: Identity,
    access: Option<crate::config::AccessSettings>,
    installer: crate::config::InstallerSettings,
    health: crate::config::HealthSettings,
    factory: SoftwareVersion,
    transport: Transport,
    policy: crate::fetch::RetryPolicy,
    profile: DeviceProfile,
    slots: Slots,
    download_dir: PathBuf,
    running: SoftwareVersion,
    tx: mpsc::UnboundedSender<JobEvent>,
}

impl Job {
    async fn run(self, cmd: UpdateCommand) {
        let tx = self.tx.clone();
        let job_id = cmd.job_id.clone();
        let stage = std::sync::Arc::new(std::sync::Mutex::new(JobState::Received));
        let seen = stage.clone();
        let mut on_progress = move |state, percent| {
            if let Ok(mut s) = seen.lock() {
                *s = state;
            }
            drop(tx.send(JobEvent::Progress(progress(&job_id, state, percent))))
        };
        let resolved = resolve(&cmd, self.access.as_ref());
        let credentials = match (&self.access, cmd.use_defaults) {
            (Some(a), true) => a.user.clone().map(|u| (u, a.password.clone())),
            _ => None,
        };
        let elapsed = self.started.elapsed().unwrap_or_default();
        let counters = crate::fetch::Counters::default();
        let began = std::time::Instant::now();
        let fetched = match &resolved {
            Ok(cmd) => {
                let fetching = fetch(
                    &self.transport,
                    &credentials,
                    cmd,
                    &self.profile,
                    &self.download_dir,
                    self.policy,
                    &counters,
                    &mut on_progress,
                );
                match tokio::time::timeout(self.limit.saturating_sub(elapsed), fetching).await {
                    Ok(fetched) => fetched,
                    Err(_) => {
                        // Abandoned: the partial download goes, nothing was installed.
                        let file = crate::fetch::download_path(&self.download_dir, &cmd.job_id);
                        let received = tokio::fs::metadata(&file).await.map(|m| m.len()).unwrap_or(0);
                        crate::fetch::remove(&file).await;
                        let during = match stage.lock().map(|s| *s) {
                            Ok(JobState::Verifying) => JobState::Verifying,
                            _ => JobState::Downloading,
                        };
                        tracing::warn!(job = %cmd.job_id, limit_secs = self.limit.as_secs(), "job timed out while {during}");
                        Fetched::Failed(Reason::TimedOut { limit_secs: self.limit.as_secs(), during, received })
                    }
                }
            }
            Err(reason) => Fetched::Failed(reason.clone()),
        };
        let download = resolved.is_ok().then(|| counters.stats(began.elapsed()));
        let final_report = |state, running: &SoftwareVersion, reason: Option<Reason>, override_used| Report {
            job_id: cmd.job_id.clone(),
            state,
            progress: None,
            running_version: Some(running.clone()),
            reason,
            override_used,
            download,
        };
        let report = match fetched {
            Fetched::Rejected(mut reason) => {
                if let Reason::HardwareLevelIncompatible { level_source, level_conflict, .. } = &mut reason {
                    *level_source = Some(self.identity.source);
                    *level_conflict = self.identity.conflict;
                }
                final_report(JobState::Rejected, &self.running, Some(reason), false)
            }
            Fetched::Failed(reason) => final_report(JobState::Failed, &self.running, Some(reason), false),
            Fetched::Verified { verified, file, override_used } => {
                on_progress(JobState::Installing, None);
                let previous = self.slots.active().ok().flatten();
                let version = verified.header.software_version.clone();
                let len = verified.header.payload_len;
                let offset = verified.file_len - len;
                let installed = install(&self.slots, &self.installer, &file, offset, len, &version, &cmd.job_id).await;
                crate::fetch::remove(&file).await;
                match installed {
                    Ok(active) if self.health.configured() => {
                        let pending =
                            AwaitingHealth { job_id: cmd.job_id.clone(), installed: active, previous, override_used };
                        let (ack, acked) = oneshot::channel();
                        let _ = self.tx.send(JobEvent::Installed { pending: pending.clone(), ack });
                        let _ = acked.await;
                        on_progress(JobState::Restarting, None);
                        if let Some(reboot) = &self.health.reboot_command {
                            // On a phone this does not return: the agent starts again and checks health then.
                            if let Err(e) = crate::hooks::run(reboot, &[], Duration::from_secs(120)).await {
                                tracing::warn!(job = %cmd.job_id, "reboot command failed: {e}; checking health now");
                            }
                        }
                        check_health(&self.health, &self.slots, &pending, &self.factory).await
                    }
                    Ok(active) => final_report(JobState::Succeeded, &active.version, None, override_used),
                    Err(detail) => final_report(
                        JobState::Failed,
                        &self.running,
                        Some(Reason::InstallFailed { detail }),
                        override_used,
                    ),
                }
            }
        };
        let _ = self.tx.send(JobEvent::Done(report));
    }
}

/// Runs the health check of an install and reports: `succeeded` if healthy (or if there is no check), else
/// switches back to the previous version and reports `rolled_back`.
async fn check_health(
    health: &crate::config::HealthSettings,
    slots: &Slots,
    pending: &AwaitingHealth,
    factory: &SoftwareVersion,
) -> Report {
    let report = |state, running: &SoftwareVersion, reason| Report {
        job_id: pending.job_id.clone(),
        state,
        progress: None,
        running_version: Some(running.clone()),
        reason,
        override_used: pending.override_used,
        download: None,
    };
    let Some(check) = &health.check_command else {
        return report(JobState::Succeeded, &pending.installed.version, None);
    };
    let env = [("BINDWAVE_JOB", pending.job_id.clone()), ("BINDWAVE_VERSION", pending.installed.version.to_string())];
    let timeout = Duration::from_secs(health.check_timeout_secs.unwrap_or(60));
    match crate::hooks::run(check, &env, timeout).await {
        Ok(()) => report(JobState::Succeeded, &pending.installed.version, None),
        Err(detail) => {
            let back = pending.previous.as_ref().map_or_else(|| factory.clone(), |a| a.version.clone());
            match slots.restore(pending.previous.as_ref()) {
                Ok(()) => report(JobState::RolledBack, &back, Some(Reason::HealthCheckFailed { detail })),
                Err(e) => report(
                    JobState::Failed,
                    &pending.installed.version,
                    Some(Reason::HealthCheckFailed {
                        detail: format!("{detail}; and the switch back failed: {}", crate::error::chain(&e)),
                    }),
                ),
            }
        }
    }
}

/// Stages the payload in the inactive slot, runs the configured installer on it if there is one, and switches
/// to the slot if all went well. The error says what failed.
async fn install(
    slots: &Slots,
    installer: &crate::config::InstallerSettings,
    bind: &std::path::Path,
    offset: u64,
    len: u64,
    version: &SoftwareVersion,
    job_id: &str,
) -> Result<crate::slots::Active, String> {
    let (s, b) = (slots.clone(), bind.to_path_buf());
    let staged = tokio::task::spawn_blocking(move || s.stage(&b, offset, len)).await.map_err(|e| e.to_string())?;
    let (slot, payload) = staged.map_err(|e| crate::error::chain(&e))?;
    if let Some(cmd) = &installer.command {
        let path = payload.display().to_string();
        let argv: Vec<String> = cmd.iter().map(|a| a.replace("{payload}", &path)).collect();
        let env = [
            ("BINDWAVE_PAYLOAD", path),
            ("BINDWAVE_VERSION", version.to_string()),
            ("BINDWAVE_JOB", job_id.to_string()),
        ];
        let timeout = Duration::from_secs(installer.timeout_secs.unwrap_or(600));
        crate::hooks::run(&argv, &env, timeout).await.map_err(|e| format!("the installer failed: {e}"))?;
    }
    let (s, v, j) = (slots.clone(), version.clone(), job_id.to_string());
    let switched = tokio::task::spawn_blocking(move || s.switch(slot, &v, &j)).await.map_err(|e| e.to_string())?;
    switched.map_err(|e| crate::error::chain(&e))
}

/// The command with a full URL: as it came, or, with "use defaults", built from the default access settings.
fn resolve(cmd: &UpdateCommand, access: Option<&crate::config::AccessSettings>) -> Result<UpdateCommand, Reason> {
    if !cmd.use_defaults {
        return Ok(cmd.clone());
    }
    let invalid = |detail: String| Reason::InvalidCommand { detail };
    let access = access
        .ok_or_else(|| invalid("the command says use defaults, but the agent has no [access] settings".into()))?;
    let url = access.url_for(&cmd.url).map_err(invalid)?;
    Ok(UpdateCommand { url, ..cmd.clone() })
}
