//! The rollout engine: a pure state machine.
//!
//! It takes [`Input`]s (device messages, operator actions, the passing of time) with the current time,
//! changes its in-memory state, and returns [`Effect`]s: records to persist and commands to send. It does
//! no IO and reads no clock. The service around it persists every `Put` (and flushes) before it sends any
//! `Send`, so a command never goes out for a state change that a crash could forget.
//!
//! A rollout moves through its waves:
//!
//! ```text
//!  Created --start--> Active{w, AwaitingApproval} --approve--> Active{w, Updating} --wave passes-->
//!  Active{w, Soaking} --soak over--> Active{w+1, ...} ... --last wave passes--> Finished
//!
//!  Active --pause / a threshold trips (pause)--> Paused --resume--> Active
//!  any but Finished --abort / a threshold trips (abort)--> Aborted
//! ```
//!
//! Every transition is in [`Engine::advance`] (the gates) or in [`Engine::operate`] (the operator's
//! actions); every deadline comes from [`Gates`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bindwave_proto::compat::{decide, Decision, Rejection};
use bindwave_proto::wire::{Command, DeviceId, Hello, JobState, Presence, Reason, Report, UpdateCommand};
use bindwave_proto::{BindHeader, DeviceProfile};
use serde::{Deserialize, Serialize};

use crate::model::{
    AuditEntry, Baseline, Cause, Device, GateAction, Gates, Image, Job, JobPhase, Millis, Outcome, Rollout,
    RolloutSpec, RolloutState, Stage, Tally, Wave, WaveSize,
};
use crate::ControllerError;

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Input {
    Hello(Hello),
    Presence(DeviceId, Presence),
    Report(DeviceId, Report),
    AddImage(Image),
    /// `seed` draws the wave members when the spec has none.
    CreateRollout {
        spec: RolloutSpec,
        seed: u64,
        actor: String,
    },
    Operate {
        rollout: String,
        action: Action,
        actor: String,
        reason: String,
    },
    /// Pause (or abort) every rollout that is under way.
    EmergencyStop {
        actor: String,
        reason: String,
        abort: bool,
    },
    /// Time passed: device timeouts and soak times.
    Tick,
}

/// What an operator can do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Pause,
    Resume,
    Abort,
    /// Command failed and timed-out devices again, as a new attempt.
    Retry,
    /// Let a wave that waits for approval start.
    Approve,
}

impl std::str::FromStr for Action {
    type Err = ControllerError;
    fn from_str(s: &str) -> Result<Self, ControllerError> {
        Action::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            ControllerError::BadRequest(format!("no rollout action {s:?} ({})", names.join(", ")))
        })
    }
}

impl Action {
    pub const ALL: [Action; 6] =
        [Action::Start, Action::Pause, Action::Resume, Action::Abort, Action::Retry, Action::Approve];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Abort => "abort",
            Action::Retry => "retry",
            Action::Approve => "approve",
        }
    }
}

/// What the service must do, in order: every `Put` durably, then every `Send`.
// Effects live for one batch; boxing the large records would add an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Put(Record),
    Send { device: DeviceId, command: Command },
}

/// A gate's observed ratio beside its threshold (see [`Engine::gate_readings`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateReading {
    /// `success`, `failure` or `rejection`.
    pub gate: &'static str,
    pub observed: f64,
    pub threshold: f64,
}

/// A record to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Device(Device),
    Image(Image),
    Rollout(Rollout),
    Job(Job),
    Audit(AuditEntry),
}

/// What an input answers.
#[allow(clippy::large_enum_variant)] // one per request, short-lived
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    None,
    Image(Image),
    Rollout(Rollout),
    /// The rollouts an emergency stop stopped.
    Stopped(Vec<String>),
}

/// A rollout's plan: who is in which wave, and what the inventory predicts they will say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub image: Image,
    pub seed: u64,
    /// Distinct (hardware level, running software version) pairs among the targets; wave 1 holds one of each.
    pub cohorts: usize,
    pub waves: Vec<PlannedWave>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedWave {
    pub devices: Vec<DeviceId>,
    pub gates: Gates,
    pub prediction: Prediction,
}

/// What the compatibility rule predicts from the devices' hello messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    pub install: usize,
    /// Would reject, but Override is set.
    pub install_with_override: usize,
    pub rejected_hardware: usize,
    pub rejected_software: usize,
    /// Devices that never said hello: nothing to predict from.
    pub unknown: usize,
    /// Why, grouped: reason text -> devices.
    pub reasons: BTreeMap<String, usize>,
}

/// A rollout with what is derived from its jobs (rebuilt on restore, never stored).
#[derive(Debug, Clone)]
struct Live {
    rollout: Rollout,
    jobs: BTreeMap<DeviceId, Job>,
    /// Per wave: outcome counts.
    tallies: Vec<Tally>,
    /// Per wave: devices waiting for their command, in plan order.
    queues: Vec<VecDeque<DeviceId>>,
}

impl Live {
    fn new(rollout: Rollout) -> Live {
        let n = rollout.waves.len();
        Live { rollout, jobs: BTreeMap::new(), tallies: vec![Tally::default(); n], queues: vec![VecDeque::new(); n] }
    }

    fn total(&self) -> Tally {
        let mut t = Tally::default();
        for w in &self.tallies {
            t.merge(w);
        }
        t
    }
}

pub struct Engine {
    /// Where agents fetch binds: `{bind_url_base}/binds/{sha256}.bind`.
    bind_url_base: String,
    devices: BTreeMap<DeviceId, Device>,
    images: BTreeMap<String, Image>,
    /// By rollout number, so `r10` sorts after `r9`.
    rollouts: BTreeMap<u64, Live>,
    /// Every job id ever issued (all attempts) -> its rollout and device.
    job_ids: HashMap<String, (u64, DeviceId)>,
    /// In-flight jobs by deadline.
    deadlines: BTreeSet<(Millis, u64, DeviceId)>,
    audit: Vec<AuditEntry>,
}

/// The rollout number in an id like `r12`.
pub fn rollout_number(id: &str) -> Option<u64> {
    id.strip_prefix('r')?.parse().ok()
}

/// The job id of a device's attempt in a rollout: `r1-phone-0001`, then `r1-phone-0001.2`, ...
fn job_id(rollout: &str, device: &DeviceId, attempt: u32) -> String {
    if attempt <= 1 {
        format!("{rollout}-{device}")
    } else {
        format!("{rollout}-{device}.{attempt}")
    }
}

/// A small, fixed pseudo-random generator (SplitMix64): the same seed draws the same waves on every build.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

const SYSTEM: &str = "bindwave";

impl Engine {
    pub fn new(bind_url_base: impl Into<String>) -> Self {
        Engine {
            bind_url_base: bind_url_base.into().trim_end_matches('/').to_string(),
            devices: BTreeMap::new(),
            images: BTreeMap::new(),
            rollouts: BTreeMap::new(),
            job_ids: HashMap::new(),
            deadlines: BTreeSet::new(),
            audit: Vec::new(),
        }
    }

    /// Loads a stored record at start-up. Rollouts before their jobs.
    pub fn restore(&mut self, record: Record) {
        match record {
            Record::Device(d) => {
                self.devices.insert(d.id.clone(), d);
            }
            Record::Image(i) => {
                self.images.insert(i.sha256.clone(), i);
            }
            Record::Rollout(r) => {
                if let Some(n) = rollout_number(&r.id) {
                    match self.rollouts.get_mut(&n) {
                        // A later version of a rollout keeps the jobs already restored.
                        Some(live) if live.rollout.waves.len() == r.waves.len() => live.rollout = r,
                        _ => {
                            self.rollouts.insert(n, Live::new(r));
                        }
                    }
                }
            }
            Record::Job(j) => {
                let Some(n) = rollout_number(&j.rollout) else { return };
                let Some(live) = self.rollouts.get_mut(&n) else { return };
                if j.wave >= live.tallies.len() {
                    return;
                }
                for attempt in 1..=j.attempt {
                    self.job_ids.insert(job_id(&j.rollout, &j.device, attempt), (n, j.device.clone()));
                }
                let deadline = |job: &Job| {
                    let timeout = live.rollout.waves[job.wave].gates.device_timeout_secs * 1000;
                    job.sent_at.filter(|_| job.phase.in_flight()).map(|sent| (sent + timeout, n, job.device.clone()))
                };
                // A later version of a job replaces the earlier one.
                if let Some(old) = live.jobs.get(&j.device) {
                    live.tallies[old.wave].remove(old.phase.outcome());
                    if let Some(d) = deadline(old) {
                        self.deadlines.remove(&d);
                    }
                }
                live.tallies[j.wave].add(j.phase.outcome());
                if let Some(d) = deadline(&j) {
                    self.deadlines.insert(d);
                }
                live.jobs.insert(j.device.clone(), j);
            }
            Record::Audit(a) => self.audit.push(a),
        }
    }

    /// Call once after every record is restored: rebuilds the dispatch queues in plan order, and returns the
    /// commands still owed (every job sent and not finished). Devices ignore a repeat of a job in hand and
    /// answer a repeat of a finished one with its outcome.
    pub fn resume(&mut self) -> Vec<Effect> {
        self.audit.sort_by_key(|a| a.seq);
        for live in self.rollouts.values_mut() {
            let mut pending: Vec<&Job> = live.jobs.values().filter(|j| j.phase == JobPhase::Pending).collect();
            pending.sort_by_key(|j| (j.wave, j.order));
            for q in &mut live.queues {
                q.clear();
            }
            for j in pending {
                live.queues[j.wave].push_back(j.device.clone());
            }
        }
        let owed: Vec<(u64, DeviceId)> = self
            .rollouts
            .iter()
            .flat_map(|(n, l)| l.jobs.values().filter(|j| j.phase.in_flight()).map(move |j| (*n, j.device.clone())))
            .collect();
        owed.into_iter().filter_map(|(n, d)| self.command_for(n, &d)).collect()
    }

    pub fn handle(&mut self, input: Input, now: Millis) -> Result<(Reply, Vec<Effect>), ControllerError> {
        let mut fx = Vec::new();
        let reply = match input {
            Input::Hello(hello) => {
                self.on_hello(hello, now, &mut fx);
                Reply::None
            }
            Input::Presence(id, p) => {
                self.on_presence(id, p, now, &mut fx);
                Reply::None
            }
            Input::Report(id, r) => {
                self.on_report(id, r, now, &mut fx);
                Reply::None
            }
            Input::AddImage(image) => {
                let image = self.images.entry(image.sha256.clone()).or_insert(image).clone();
                fx.push(Effect::Put(Record::Image(image.clone())));
                Reply::Image(image)
            }
            Input::CreateRollout { spec, seed, actor } => {
                Reply::Rollout(self.create_rollout(spec, seed, actor, now, &mut fx)?)
            }
            Input::Operate { rollout, action, actor, reason } => {
                Reply::Rollout(self.operate(&rollout, action, &actor, &reason, now, &mut fx)?)
            }
            Input::EmergencyStop { actor, reason, abort } => {
                Reply::Stopped(self.emergency_stop(&actor, &reason, abort, now, &mut fx))
            }
            Input::Tick => {
                self.tick(now, &mut fx);
                Reply::None
            }
        };
        // Records first, then commands (a stable sort keeps each group's order).
        fx.sort_by_key(|e| matches!(e, Effect::Send { .. }));
        Ok((reply, fx))
    }

    // ----- devices -----

    fn on_hello(&mut self, hello: Hello, now: Millis, fx: &mut Vec<Effect>) {
        let id = hello.device_id.clone();
        let device = Device { id: id.clone(), hello: Some(hello), online: true, last_seen: now };
        self.devices.insert(id.clone(), device.clone());
        fx.push(Effect::Put(Record::Device(device.clone())));
        // A device asks for its pending work by saying hello: send again what it has not finished.
        let owed: Vec<u64> = self
            .rollouts
            .iter()
            .filter(|(_, l)| l.jobs.get(&id).is_some_and(|j| j.phase.in_flight()))
            .map(|(n, _)| *n)
            .collect();
        for n in owed {
            fx.extend(self.command_for(n, &id));
        }
        // Rollouts that follow their filter take in a device they have not seen.
        let joining: Vec<u64> = self
            .rollouts
            .iter()
            .filter(|(_, l)| {
                l.rollout.targets.follow
                    && !l.rollout.state.is_over()
                    && !l.jobs.contains_key(&id)
                    && l.rollout.targets.matches(&device)
            })
            .map(|(n, _)| *n)
            .collect();
        for n in joining {
            self.join(n, &id, now, fx);
            self.advance(n, now, fx);
        }
    }

    /// Adds a device that appeared later to a following rollout's last wave.
    fn join(&mut self, n: u64, device: &DeviceId, now: Millis, fx: &mut Vec<Effect>) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let wave = live.rollout.waves.len() - 1;
        let order = live.jobs.values().map(|j| j.order + 1).max().unwrap_or(0);
        let job = Job {
            id: job_id(&live.rollout.id, device, 1),
            rollout: live.rollout.id.clone(),
            device: device.clone(),
            wave,
            order,
            attempt: 1,
            phase: JobPhase::Pending,
            sent_at: None,
            updated_at: now,
        };
        live.rollout.waves[wave].devices += 1;
        live.tallies[wave].add(Outcome::Pending);
        live.queues[wave].push_back(device.clone());
        self.job_ids.insert(job.id.clone(), (n, device.clone()));
        fx.push(Effect::Put(Record::Job(job.clone())));
        fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
        live.jobs.insert(device.clone(), job);
    }

    fn on_presence(&mut self, id: DeviceId, p: Presence, now: Millis, fx: &mut Vec<Effect>) {
        let device =
            self.devices.entry(id.clone()).or_insert_with(|| Device { id, hello: None, online: false, last_seen: now });
        if device.online != p.online {
            device.online = p.online;
            device.last_seen = now;
            fx.push(Effect::Put(Record::Device(device.clone())));
        }
    }

    fn on_report(&mut self, device: DeviceId, report: Report, now: Millis, fx: &mut Vec<Effect>) {
        let ack = |fx: &mut Vec<Effect>| {
            if report.state.is_final() {
                fx.push(Effect::Send {
                    device: device.clone(),
                    command: Command::Ack { job_id: report.job_id.clone() },
                })
            }
        };
        let Some((n, _)) = self.job_ids.get(&report.job_id).filter(|(_, d)| *d == device).cloned() else {
            // Not a job of ours for this device: acknowledge a final report so the device stops repeating it.
            ack(fx);
            return;
        };
        let Some(live) = self.rollouts.get_mut(&n) else { return ack(fx) };
        let Some(job) = live.jobs.get(&device) else { return ack(fx) };
        if job.id != report.job_id || (job.phase.is_final() && job.phase != JobPhase::TimedOut) {
            // An earlier attempt, or a repeat (QoS 1 delivers at least once; devices repeat until acknowledged).
            ack(fx);
            return;
        }
        let phase = match (report.state, report.reason.clone(), report.running_version.clone()) {
            (JobState::Succeeded, _, Some(v)) => {
                JobPhase::Succeeded { running_version: v, override_used: report.override_used }
            }
            // A success must name what runs now; without it the report proves nothing.
            (JobState::Succeeded, _, None) => return,
            (JobState::Rejected, Some(reason), v) => JobPhase::Rejected { reason, running_version: v },
            (JobState::Failed | JobState::RolledBack, Some(reason), v) => {
                JobPhase::Failed { reason, running_version: v }
            }
            (s, None, v) if s.is_final() => JobPhase::Failed {
                reason: Reason::InstallFailed { detail: format!("device reported {s} without a reason") },
                running_version: v,
            },
            (state, _, _) => {
                match &job.phase {
                    // Still working after its deadline: the timeout stands until a final report.
                    JobPhase::TimedOut => return,
                    JobPhase::Running { state: cur, progress }
                        if state < *cur || (state == *cur && report.progress <= *progress) =>
                    {
                        return; // out of order: older news
                    }
                    _ => {}
                }
                JobPhase::Running { state, progress: report.progress }
            }
        };
        let finished = phase.is_final();
        self.set_phase(n, &device, phase, now, fx);
        if finished {
            ack(fx);
            self.advance(n, now, fx);
        }
    }

    /// Changes a job's phase, keeping the tallies and deadlines in step, and records it.
    fn set_phase(&mut self, n: u64, device: &DeviceId, phase: JobPhase, now: Millis, fx: &mut Vec<Effect>) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let Some(job) = live.jobs.get_mut(device) else { return };
        let timeout = live.rollout.waves[job.wave].gates.device_timeout_secs * 1000;
        if let (true, false, Some(sent)) = (job.phase.in_flight(), phase.in_flight(), job.sent_at) {
            self.deadlines.remove(&(sent + timeout, n, device.clone()));
        }
        if phase == JobPhase::Sent {
            job.sent_at = Some(now);
            self.deadlines.insert((now + timeout, n, device.clone()));
        }
        live.tallies[job.wave].remove(job.phase.outcome());
        live.tallies[job.wave].add(phase.outcome());
        job.phase = phase;
        job.updated_at = now;
        fx.push(Effect::Put(Record::Job(job.clone())));
    }

    fn tick(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        let due: Vec<(Millis, u64, DeviceId)> =
            self.deadlines.iter().take_while(|(d, ..)| *d <= now).cloned().collect();
        for (deadline, n, device) in due {
            self.deadlines.remove(&(deadline, n, device.clone()));
            let in_flight =
                self.rollouts.get(&n).and_then(|l| l.jobs.get(&device)).is_some_and(|j| j.phase.in_flight());
            if in_flight {
                self.set_phase(n, &device, JobPhase::TimedOut, now, fx);
            }
        }
        let numbers: Vec<u64> = self
            .rollouts
            .iter()
            .filter(|(_, l)| matches!(l.rollout.state, RolloutState::Active { .. }))
            .map(|(n, _)| *n)
            .collect();
        for n in numbers {
            self.advance(n, now, fx);
        }
    }

    /// The earliest moment a [`Input::Tick`] can change anything: a device deadline or the end of a soak.
    pub fn next_deadline(&self) -> Option<Millis> {
        let soak = self.rollouts.values().filter_map(|l| match l.rollout.state {
            RolloutState::Active { stage: Stage::Soaking { until }, .. } => Some(until),
            _ => None,
        });
        self.deadlines.iter().next().map(|(d, ..)| *d).into_iter().chain(soak).min()
    }

    // ----- the gates -----

    /// Moves a rollout as far as its gates allow: trips thresholds, sends commands, ends waves, starts the next.
    fn advance(&mut self, n: u64, now: Millis, fx: &mut Vec<Effect>) {
        // Each turn moves at most one wave forward, so this ends.
        for _ in 0..=self.rollouts.get(&n).map_or(0, |l| l.rollout.waves.len()) {
            let Some(live) = self.rollouts.get(&n) else { return };
            let RolloutState::Active { wave, stage } = live.rollout.state.clone() else { return };
            if let Some((cause, action)) = tripped(live, wave) {
                self.stop(n, wave, stage, cause, action, SYSTEM, now, fx);
                return;
            }
            match stage {
                Stage::AwaitingApproval => return,
                Stage::Updating => {
                    self.dispatch(n, wave, now, fx);
                    let live = &self.rollouts[&n];
                    // Retried devices of earlier waves hold the wave open too.
                    if live.tallies[..=wave].iter().any(|t| t.open() > 0) {
                        return;
                    }
                    let tally = live.tallies[wave];
                    let gates = &live.rollout.waves[wave].gates;
                    let eligible = tally.total() - tally.rejected() - tally.get(Outcome::Cancelled);
                    let succeeded = tally.get(Outcome::Succeeded);
                    if eligible > 0 && (succeeded as f64) < gates.success_ratio * eligible as f64 - 1e-9 {
                        let cause = Cause::SuccessGate { wave, succeeded, eligible, required: gates.success_ratio };
                        self.stop(n, wave, Stage::Updating, cause, GateAction::Pause, SYSTEM, now, fx);
                        return;
                    }
                    self.pass_wave(n, wave, now, fx);
                }
                Stage::Soaking { until } => {
                    if now < until {
                        return;
                    }
                    self.next_wave(n, wave, now, fx);
                }
            }
        }
    }

    fn pass_wave(&mut self, n: u64, wave: usize, now: Millis, fx: &mut Vec<Effect>) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let soak = live.rollout.waves[wave].gates.soak_secs * 1000;
        live.rollout.waves[wave].passed_at = Some(now);
        live.rollout.state = RolloutState::Active { wave, stage: Stage::Soaking { until: now + soak } };
        fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
    }

    fn next_wave(&mut self, n: u64, wave: usize, now: Millis, fx: &mut Vec<Effect>) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let id = live.rollout.id.clone();
        if wave + 1 >= live.rollout.waves.len() {
            live.rollout.state = RolloutState::Finished;
            live.rollout.ended_at = Some(now);
            fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
            self.record(now, SYSTEM, "finish", Some(&id), "every wave passed its gates".into(), fx);
            return;
        }
        let next = wave + 1;
        let approval = live.rollout.waves[next].gates.approval;
        if !approval {
            live.rollout.waves[next].started_at = Some(now);
        }
        live.rollout.state = RolloutState::Active {
            wave: next,
            stage: if approval { Stage::AwaitingApproval } else { Stage::Updating },
        };
        fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
        let why = if approval { "waits for approval" } else { "started" };
        self.record(now, SYSTEM, "wave", Some(&id), format!("wave {} {why}", next + 1), fx);
    }

    /// Sends commands to waiting devices of the started waves, up to the current wave's concurrency limit.
    fn dispatch(&mut self, n: u64, wave: usize, now: Millis, fx: &mut Vec<Effect>) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let limit = live.rollout.waves[wave].gates.max_concurrent.unwrap_or(usize::MAX);
        let mut in_flight: usize = live.tallies[..=wave].iter().map(|t| t.get(Outcome::InProgress)).sum();
        let mut picked = Vec::new();
        for w in 0..=wave {
            while in_flight < limit {
                let Some(device) = live.queues[w].pop_front() else { break };
                if live.jobs.get(&device).is_some_and(|j| j.phase == JobPhase::Pending) {
                    picked.push(device);
                    in_flight += 1;
                }
            }
        }
        for device in picked {
            self.set_phase(n, &device, JobPhase::Sent, now, fx);
            fx.extend(self.command_for(n, &device));
        }
    }

    /// Pauses or aborts a rollout, and records why.
    #[allow(clippy::too_many_arguments)]
    fn stop(
        &mut self,
        n: u64,
        wave: usize,
        stage: Stage,
        cause: Cause,
        action: GateAction,
        actor: &str,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let id = live.rollout.id.clone();
        let text = match &cause {
            Cause::Operator { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        match action {
            GateAction::Pause => {
                live.rollout.state = RolloutState::Paused { wave, stage, cause };
                fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
                self.record(now, actor, "pause", Some(&id), text, fx);
            }
            GateAction::Abort => {
                live.rollout.state = RolloutState::Aborted { cause };
                live.rollout.ended_at = Some(now);
                fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
                self.cancel_pending(n, now, fx);
                self.record(now, actor, "abort", Some(&id), text, fx);
            }
        }
    }

    fn cancel_pending(&mut self, n: u64, now: Millis, fx: &mut Vec<Effect>) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        for q in &mut live.queues {
            q.clear();
        }
        let pending: Vec<DeviceId> =
            live.jobs.values().filter(|j| j.phase == JobPhase::Pending).map(|j| j.device.clone()).collect();
        for d in pending {
            self.set_phase(n, &d, JobPhase::Cancelled, now, fx);
        }
    }

    // ----- operators -----

    fn operate(
        &mut self,
        id: &str,
        action: Action,
        actor: &str,
        reason: &str,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<Rollout, ControllerError> {
        let n = rollout_number(id)
            .filter(|n| self.rollouts.contains_key(n))
            .ok_or_else(|| ControllerError::UnknownRollout(id.to_string()))?;
        let live = &self.rollouts[&n];
        let state = live.rollout.state.clone();
        let refuse =
            || ControllerError::InvalidAction { rollout: id.to_string(), action: action.as_str(), state: state.name() };
        let operator = Cause::Operator { actor: actor.to_string(), reason: reason.to_string() };
        match (action, state.clone()) {
            (Action::Start, RolloutState::Created) => {
                let live = self.rollouts.get_mut(&n).ok_or_else(refuse)?;
                let approval = live.rollout.waves[0].gates.approval;
                live.rollout.started_at = Some(now);
                if !approval {
                    live.rollout.waves[0].started_at = Some(now);
                }
                live.rollout.state = RolloutState::Active {
                    wave: 0,
                    stage: if approval { Stage::AwaitingApproval } else { Stage::Updating },
                };
                fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
            }
            (Action::Pause, RolloutState::Active { wave, stage }) => {
                self.stop(n, wave, stage, operator, GateAction::Pause, actor, now, fx);
                return Ok(self.rollouts[&n].rollout.clone());
            }
            (Action::Abort, s) if !s.is_over() => {
                let wave = s.wave().unwrap_or(0);
                self.stop(n, wave, Stage::Updating, operator, GateAction::Abort, actor, now, fx);
                return Ok(self.rollouts[&n].rollout.clone());
            }
            (Action::Resume, RolloutState::Paused { wave, stage, cause }) => {
                let live = self.rollouts.get_mut(&n).ok_or_else(refuse)?;
                // The thresholds watch what happens from now on.
                let t = live.total();
                live.rollout.baseline = Baseline { failed: t.failed(), finished: t.finished(), rejected: t.rejected() };
                live.rollout.state = RolloutState::Active { wave, stage };
                fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
                if matches!(cause, Cause::SuccessGate { .. }) {
                    // The operator accepts the wave as it is.
                    self.pass_wave(n, wave, now, fx);
                }
            }
            (Action::Approve, RolloutState::Active { wave, stage: Stage::AwaitingApproval }) => {
                let live = self.rollouts.get_mut(&n).ok_or_else(refuse)?;
                live.rollout.waves[wave].approved_by = Some(actor.to_string());
                live.rollout.waves[wave].started_at = Some(now);
                live.rollout.state = RolloutState::Active { wave, stage: Stage::Updating };
                fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
            }
            (Action::Retry, RolloutState::Active { .. } | RolloutState::Paused { .. } | RolloutState::Finished) => {
                self.retry(n, now, fx);
            }
            _ => return Err(refuse()),
        }
        self.record(now, actor, action.as_str(), Some(id), reason.to_string(), fx);
        self.advance(n, now, fx);
        Ok(self.rollouts[&n].rollout.clone())
    }

    /// Failed and timed-out devices of the started waves get a new attempt; rejections are never retried.
    fn retry(&mut self, n: u64, now: Millis, fx: &mut Vec<Effect>) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let mut again: Vec<&Job> =
            live.jobs.values().filter(|j| matches!(j.phase, JobPhase::Failed { .. } | JobPhase::TimedOut)).collect();
        again.sort_by_key(|j| (j.wave, j.order));
        let again: Vec<(DeviceId, usize)> = again.into_iter().map(|j| (j.device.clone(), j.wave)).collect();
        if let RolloutState::Finished = live.rollout.state {
            let last = live.rollout.waves.len() - 1;
            live.rollout.state = RolloutState::Active { wave: last, stage: Stage::Updating };
            live.rollout.ended_at = None;
            fx.push(Effect::Put(Record::Rollout(live.rollout.clone())));
        }
        for (device, wave) in again {
            let Some(live) = self.rollouts.get_mut(&n) else { return };
            let Some(job) = live.jobs.get_mut(&device) else { continue };
            job.attempt += 1;
            job.id = job_id(&job.rollout, &device, job.attempt);
            job.sent_at = None;
            self.job_ids.insert(job.id.clone(), (n, device.clone()));
            live.queues[wave].push_back(device.clone());
            self.set_phase(n, &device, JobPhase::Pending, now, fx);
        }
    }

    fn emergency_stop(
        &mut self,
        actor: &str,
        reason: &str,
        abort: bool,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Vec<String> {
        let cause = Cause::EmergencyStop { actor: actor.to_string(), reason: reason.to_string() };
        let action = if abort { GateAction::Abort } else { GateAction::Pause };
        let targets: Vec<(u64, usize, Stage)> = self
            .rollouts
            .iter()
            .filter_map(|(n, l)| match &l.rollout.state {
                RolloutState::Active { wave, stage } => Some((*n, *wave, *stage)),
                RolloutState::Paused { wave, stage, .. } if abort => Some((*n, *wave, *stage)),
                _ => None,
            })
            .collect();
        let mut stopped = Vec::new();
        for (n, wave, stage) in targets {
            self.stop(n, wave, stage, cause.clone(), action, actor, now, fx);
            stopped.push(self.rollouts[&n].rollout.id.clone());
        }
        let what = if abort { "abort" } else { "pause" };
        self.record(now, actor, "emergency_stop", None, format!("{what} {} rollout(s): {reason}", stopped.len()), fx);
        stopped
    }

    fn record(
        &mut self,
        now: Millis,
        actor: &str,
        action: &str,
        rollout: Option<&str>,
        reason: String,
        fx: &mut Vec<Effect>,
    ) {
        let seq = self.audit.last().map_or(1, |a| a.seq + 1);
        let entry = AuditEntry {
            seq,
            at: now,
            actor: actor.to_string(),
            action: action.to_string(),
            rollout: rollout.map(str::to_string),
            reason,
        };
        fx.push(Effect::Put(Record::Audit(entry.clone())));
        self.audit.push(entry);
    }

    // ----- creating -----

    fn create_rollout(
        &mut self,
        spec: RolloutSpec,
        seed: u64,
        actor: String,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<Rollout, ControllerError> {
        let plan = self.plan(&spec, seed)?;
        let n = self.rollouts.keys().next_back().map_or(1, |n| n + 1);
        let id = format!("r{n}");
        let rollout = Rollout {
            id: id.clone(),
            image: plan.image.sha256.clone(),
            targets: spec.targets.clone(),
            waves: plan
                .waves
                .iter()
                .map(|w| Wave {
                    devices: w.devices.len(),
                    gates: w.gates.clone(),
                    started_at: None,
                    passed_at: None,
                    approved_by: None,
                })
                .collect(),
            seed: plan.seed,
            override_compat: spec.override_compat,
            use_defaults: spec.use_defaults,
            state: RolloutState::Created,
            baseline: Baseline::default(),
            created_by: actor.clone(),
            created_at: now,
            started_at: None,
            ended_at: None,
        };
        let mut live = Live::new(rollout.clone());
        fx.push(Effect::Put(Record::Rollout(rollout.clone())));
        let mut order = 0u32;
        for (w, planned) in plan.waves.iter().enumerate() {
            for device in &planned.devices {
                let job = Job {
                    id: job_id(&id, device, 1),
                    rollout: id.clone(),
                    device: device.clone(),
                    wave: w,
                    order,
                    attempt: 1,
                    phase: JobPhase::Pending,
                    sent_at: None,
                    updated_at: now,
                };
                order += 1;
                self.job_ids.insert(job.id.clone(), (n, device.clone()));
                live.tallies[w].add(Outcome::Pending);
                live.queues[w].push_back(device.clone());
                fx.push(Effect::Put(Record::Job(job.clone())));
                live.jobs.insert(device.clone(), job);
            }
        }
        self.rollouts.insert(n, live);
        let waves: Vec<String> = plan.waves.iter().map(|w| w.devices.len().to_string()).collect();
        self.record(
            now,
            &actor,
            "create",
            Some(&id),
            format!("waves of {} devices, seed {}", waves.join(", "), plan.seed),
            fx,
        );
        Ok(rollout)
    }

    /// Plans a rollout without creating it: the targets, drawn into waves, and what the inventory predicts.
    ///
    /// Wave 1 is a canary that covers the fleet's variety: one device of every (hardware level, running
    /// software version) cohort among the targets, then random devices up to its size. Later waves take the
    /// rest in a random order. The draw depends only on the targets and the seed.
    pub fn plan(&self, spec: &RolloutSpec, seed: u64) -> Result<Plan, ControllerError> {
        let image = self.find_image(&spec.image)?.clone();
        let seed = spec.seed.unwrap_or(seed);
        spec.gates.validate().map_err(ControllerError::BadRequest)?;
        if let Some(unknown) = spec.targets.devices.iter().find(|d| !self.devices.contains_key(*d)) {
            return Err(ControllerError::UnknownDevice(unknown.to_string()));
        }
        let mut targets: Vec<&Device> = self.devices.values().filter(|d| spec.targets.matches(d)).collect();
        if targets.is_empty() {
            return Err(ControllerError::EmptyRollout);
        }
        let total = targets.len();
        let mut rng = SplitMix64(seed);
        rng.shuffle(&mut targets);

        // The canary: the first of each cohort in the shuffled order.
        let cohort = |d: &Device| d.hello.as_ref().map(|h| (h.hardware_level, h.software_version.clone()));
        let mut seen = BTreeSet::new();
        let (mut canary, mut rest): (Vec<&Device>, Vec<&Device>) = (Vec::new(), Vec::new());
        for d in targets {
            if seen.insert(cohort(d)) {
                canary.push(d);
            } else {
                rest.push(d);
            }
        }
        let cohorts = canary.len();

        let specs = if spec.waves.is_empty() {
            vec![crate::model::WaveSpec { size: WaveSize::Percent(100.0), gates: Default::default() }]
        } else {
            spec.waves.clone()
        };
        let mut ordered: Vec<&Device> = canary;
        ordered.extend(rest);
        let mut waves = Vec::new();
        let mut taken = 0;
        for (i, ws) in specs.iter().enumerate() {
            let mut reach = ws.size.reach(total).max(taken);
            if i == 0 {
                reach = reach.max(cohorts).max(1);
            }
            let gates = spec.gates.with(&ws.gates);
            gates.validate().map_err(|e| ControllerError::BadRequest(format!("wave {}: {e}", i + 1)))?;
            if reach > taken {
                waves.push((ordered[taken..reach].to_vec(), gates));
                taken = reach;
            }
        }
        if taken < total {
            waves.push((ordered[taken..].to_vec(), spec.gates.clone()));
        }
        let waves = waves
            .into_iter()
            .map(|(devices, gates)| {
                let mut prediction = Prediction::default();
                for d in &devices {
                    match self.predict(&image, &d.id, spec.override_compat) {
                        None => prediction.unknown += 1,
                        Some(Decision::Proceed { overridden: None, .. }) => prediction.install += 1,
                        Some(Decision::Proceed { overridden: Some(_), .. }) => prediction.install_with_override += 1,
                        Some(Decision::Reject { rejection, .. }) => {
                            match rejection {
                                Rejection::HardwareLevelIncompatible { .. } => prediction.rejected_hardware += 1,
                                Rejection::SoftwareLevelBelowMinimum { .. } => prediction.rejected_software += 1,
                            }
                            *prediction.reasons.entry(rejection.to_string()).or_default() += 1;
                        }
                    }
                }
                PlannedWave { devices: devices.iter().map(|d| d.id.clone()).collect(), gates, prediction }
            })
            .collect();
        Ok(Plan { image, seed, cohorts, waves })
    }

    fn command_for(&self, n: u64, device: &DeviceId) -> Option<Effect> {
        let live = self.rollouts.get(&n)?;
        let job = live.jobs.get(device)?;
        let image = self.images.get(&live.rollout.image)?;
        Some(Effect::Send {
            device: device.clone(),
            command: Command::Update(UpdateCommand {
                job_id: job.id.clone(),
                rollout_id: live.rollout.id.clone(),
                url: if live.rollout.use_defaults {
                    format!("{}.bind", image.sha256)
                } else {
                    format!("{}/binds/{}.bind", self.bind_url_base, image.sha256)
                },
                size: image.size,
                sha256: image.sha256.clone(),
                override_compat: live.rollout.override_compat,
                use_defaults: live.rollout.use_defaults,
                timeout_secs: Some(live.rollout.waves[job.wave].gates.device_timeout_secs),
            }),
        })
    }

    // ----- reading -----

    /// An image by its SHA-256 or an unambiguous prefix of at least 6 characters.
    pub fn find_image(&self, sha: &str) -> Result<&Image, ControllerError> {
        let sha = sha.to_ascii_lowercase();
        if sha.len() < 6 {
            return Err(ControllerError::UnknownImage(sha));
        }
        let mut matches = self.images.range(sha.clone()..).take_while(|(k, _)| k.starts_with(&sha));
        match (matches.next(), matches.next()) {
            (Some((_, image)), None) => Ok(image),
            (Some(_), Some(_)) => Err(ControllerError::AmbiguousImage(sha)),
            (None, _) => Err(ControllerError::UnknownImage(sha)),
        }
    }

    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    pub fn images(&self) -> impl Iterator<Item = &Image> {
        self.images.values()
    }

    pub fn rollouts(&self) -> impl Iterator<Item = &Rollout> {
        self.rollouts.values().map(|l| &l.rollout)
    }

    pub fn rollout(&self, id: &str) -> Option<&Rollout> {
        self.rollouts.get(&rollout_number(id)?).map(|l| &l.rollout)
    }

    pub fn jobs_of(&self, id: &str) -> impl Iterator<Item = &Job> {
        rollout_number(id).and_then(|n| self.rollouts.get(&n)).into_iter().flat_map(|l| l.jobs.values())
    }

    /// Outcome counts of a whole rollout.
    pub fn tally(&self, id: &str) -> Tally {
        rollout_number(id).and_then(|n| self.rollouts.get(&n)).map(Live::total).unwrap_or_default()
    }

    /// Outcome counts per wave.
    pub fn wave_tallies(&self, id: &str) -> Vec<Tally> {
        rollout_number(id).and_then(|n| self.rollouts.get(&n)).map(|l| l.tallies.clone()).unwrap_or_default()
    }

    /// Where a rollout stands against its gates, in the wave in progress (or the last one): what each gate
    /// watches, as a ratio, beside its threshold. Counts as the gates count them (thresholds since the last
    /// resume, across the waves so far).
    pub fn gate_readings(&self, id: &str) -> Vec<GateReading> {
        let Some(live) = rollout_number(id).and_then(|n| self.rollouts.get(&n)) else { return Vec::new() };
        let Some(last) = live.rollout.waves.len().checked_sub(1) else { return Vec::new() };
        let wave = live.rollout.state.wave().unwrap_or(match live.rollout.state {
            RolloutState::Created => 0,
            _ => last,
        });
        let gates = &live.rollout.waves[wave].gates;
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let tally = live.tallies[wave];
        let eligible = tally.total() - tally.rejected() - tally.get(Outcome::Cancelled);
        let Counted { failed, finished, rejected } = counted(live, wave);
        let mut readings = vec![
            GateReading {
                gate: "success",
                observed: ratio(tally.get(Outcome::Succeeded), eligible),
                threshold: gates.success_ratio,
            },
            GateReading { gate: "failure", observed: ratio(failed, finished), threshold: gates.failure_ratio },
        ];
        if let Some(threshold) = gates.rejection_ratio {
            readings.push(GateReading { gate: "rejection", observed: ratio(rejected, finished + rejected), threshold });
        }
        readings
    }

    /// The audit log, oldest first; only one rollout's entries with `rollout`.
    pub fn audit(&self, rollout: Option<&str>) -> impl Iterator<Item = &AuditEntry> {
        let rollout = rollout.map(str::to_string);
        self.audit.iter().filter(move |a| rollout.is_none() || a.rollout == rollout)
    }

    /// What the compatibility rule predicts for `image` on a device, from its hello; `None` if the device has
    /// not said hello.
    pub fn predict(&self, image: &Image, device: &DeviceId, override_compat: bool) -> Option<Decision> {
        let hello = self.devices.get(device)?.hello.as_ref()?;
        let header =
            BindHeader::new(image.software_version.clone(), image.hardware_levels.clone(), image.payload_len, [0; 32]);
        let profile = DeviceProfile {
            hardware_level: hello.hardware_level,
            minimum_software_version: hello.minimum_software_version.clone(),
        };
        Some(decide(&header, &profile, override_compat))
    }
}

/// What the thresholds count: every wave up to `wave`, since the last resume.
struct Counted {
    failed: usize,
    finished: usize,
    rejected: usize,
}

fn counted(live: &Live, wave: usize) -> Counted {
    let mut t = Tally::default();
    for w in &live.tallies[..=wave] {
        t.merge(w);
    }
    let base = &live.rollout.baseline;
    Counted {
        failed: t.failed().saturating_sub(base.failed),
        finished: t.finished().saturating_sub(base.finished),
        rejected: t.rejected().saturating_sub(base.rejected),
    }
}

/// Whether a threshold has tripped in a rollout, counting every started wave since the last resume.
fn tripped(live: &Live, wave: usize) -> Option<(Cause, GateAction)> {
    let gates = &live.rollout.waves[wave].gates;
    let Counted { failed, finished, rejected } = counted(live, wave);
    if finished >= gates.failure_min_finished.max(1) && failed as f64 > gates.failure_ratio * finished as f64 + 1e-9 {
        return Some((Cause::FailureThreshold { failed, finished, threshold: gates.failure_ratio }, gates.on_failure));
    }
    if let Some(ratio) = gates.rejection_ratio {
        let seen = finished + rejected;
        if seen >= gates.rejection_min_finished.max(1) && rejected as f64 > ratio * seen as f64 + 1e-9 {
            return Some((
                Cause::RejectionThreshold { rejected, finished: seen, threshold: ratio },
                gates.on_rejection,
            ));
        }
    }
    None
}

#[cfg(test)]
#[path = "engine_tests.rs"]
pub(crate) mod tests;
