//! The rollout engine: a pure state machine.
//!
//! It takes [`Input`]s (device messages, operator actions, the passing of time) with the current time,
//! changes its in-memory state, and returns [`Effects`]: records to persist and commands to publish, in two
//! lists. It does no IO and reads no clock. The service around it persists every record of
//! [`Effects::persist`] (and flushes) before it publishes any command of [`Effects::publish`], so a command
//! never goes out for a state change that a crash could forget.
//!
//! A rollout moves through its waves:
//!
//! ```text
//!  Created --start--> Active{w, AwaitingApproval} --approve--> Active{w, Updating} --wave passes-->
//!  Active{w, Soaking} --soak over--> Active{w+1, ...} ... --last wave passes and soaks--> Finished
//!
//!  Active --pause / emergency stop / a threshold trips (pause) / a wave short of its success ratio--> Paused
//!  Paused --resume--> Active (after a success-gate pause the wave is let through, and soaks)
//!  anything but Finished/Aborted --abort--> Aborted
//!  Active --a threshold trips (abort)--> Aborted;  Active, Paused --emergency stop with abort--> Aborted
//!  Finished --retry (failed and timed-out devices)--> Active{last wave, Updating}
//! ```
//!
//! A wave without approval starts `Updating` at once, and a soak of 0 seconds is over as it begins.
//! Every transition is in [`gates`] (what the gates decide, from one count of what they see) or in
//! `operate` (the operator's actions); every deadline comes from [`Gates`](crate::model::Gates).
//!
//! The parts: [`plan`] draws targets into waves; [`gates`] moves rollouts; `operate` takes operators'
//! actions; `devices` takes hello, presence and report messages; `queries` are the read-only views;
//! `restore` rebuilds the engine from stored records.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bindwave_proto::window::InstallWindow;
use bindwave_proto::wire::{Command, DeviceId, Hello, Presence, Report, UpdateCommand};

use crate::model::{
    AuditEntry, Device, Image, ImageId, Job, JobPhase, Millis, Rollout, RolloutId, RolloutSpec, Schedule, Tally,
};
use crate::schedule::{Openness, Pace};

mod action;
pub mod analysis;
mod devices;
mod effects;
mod error;
pub mod gates;
mod intern;
mod liveness;
mod operate;
pub mod plan;
#[cfg(test)]
mod properties;
mod queries;
mod queue;
mod refused;
pub mod release;
mod restore;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;

pub use action::Action;
pub use analysis::Measured;
pub use effects::{Effects, Measure, Publish, Record};
pub use error::EngineError;
pub use refused::{Refusal, RefusalLog, Refused};
pub use release::ReleasePolicy;

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Input {
    /// A device introduced itself (on every connect).
    Hello(Hello),
    /// A device went online or offline.
    Presence(DeviceId, Presence),
    /// A device reported on a job.
    Report(DeviceId, Report),
    /// An operator added a verified bind.
    AddImage(Image),
    /// `seed` draws the wave members when the spec has none.
    CreateRollout { spec: Box<RolloutSpec>, seed: u64, actor: String },
    /// An operator acts on a rollout.
    Operate { rollout: RolloutId, action: Action, actor: String, reason: String },
    /// Pause (or abort) every rollout that is under way.
    EmergencyStop { actor: String, reason: String, abort: bool },
    /// Time passed: device timeouts, soak times, measurements due.
    Tick,
    /// An analysis measurement the engine asked for ([`Measure`]), as taken.
    Measured { rollout: RolloutId, wave: usize, analysis: usize, result: Measured },
}

/// What an input answers.
#[allow(clippy::large_enum_variant)] // one per request, short-lived
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The input answers nothing (device messages, ticks).
    None,
    /// The image as stored (the one already stored, if it was added before).
    Image(Image),
    /// The rollout after the change.
    Rollout(Rollout),
    /// The rollouts an emergency stop stopped.
    Stopped(Vec<RolloutId>),
    /// A device message refused, in whole (a report) or in part (a hello's hardware level): the service counts
    /// and logs it.
    Refused(Refusal),
    /// A hello that changed a known device's hardware level, taken because the hardware probe found it.
    LevelChanged { device: DeviceId, from: bindwave_proto::HardwareLevel, to: bindwave_proto::HardwareLevel },
}

/// A rollout with what is derived from its jobs (rebuilt on restore, never stored).
#[derive(Debug, Clone)]
struct Live {
    rollout: Rollout,
    /// The jobs that exist: every device commanded, and a device that joined or is retried.
    jobs: BTreeMap<DeviceId, Job>,
    /// Members planned at create and never commanded: their jobs are implied (pending, or cancelled once the
    /// rollout is aborted), and written only when first commanded. Never in `jobs` too.
    unsent: BTreeMap<DeviceId, Place>,
    /// Per wave: outcome counts.
    tallies: Vec<Tally>,
    /// Per wave: devices waiting for their command, in plan order, by time zone where the wave has windows.
    queues: Vec<queue::WaveQueue>,
    /// The pace of the wave in progress (its rate and ramp).
    pace: Pace,
    /// When dispatch can next send something it holds back now (a window opening, the rate's next slot).
    wake_at: Option<Millis>,
    /// The passed wave's analyses being measured.
    analysis: Option<analysis::AnalysisRun>,
    /// Every member by plan order (the order of its job): a page of jobs is found without a scan.
    by_order: Vec<(u32, DeviceId)>,
}

/// A member's wave and plan order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Place {
    wave: u32,
    order: u32,
}

impl Live {
    fn new(rollout: Rollout) -> Live {
        let n = rollout.waves.len();
        Live {
            rollout,
            jobs: BTreeMap::new(),
            unsent: BTreeMap::new(),
            tallies: vec![Tally::default(); n],
            queues: vec![queue::WaveQueue::default(); n],
            pace: Pace::default(),
            wake_at: None,
            analysis: None,
            by_order: Vec::new(),
        }
    }

    /// Outcome counts of the whole rollout.
    fn total(&self) -> Tally {
        let mut t = Tally::default();
        for w in &self.tallies {
            t.merge(w);
        }
        t
    }

    /// The plan order the next device to join takes: after every member's.
    fn next_order(&self) -> u32 {
        self.by_order.last().map_or(0, |(o, _)| o + 1)
    }

    /// What an unsent member's job is: pending, or cancelled by the rollout's abort.
    fn unsent_phase(&self) -> JobPhase {
        match self.rollout.state {
            crate::model::RolloutState::Aborted { .. } => JobPhase::Cancelled,
            _ => JobPhase::Pending,
        }
    }

    /// The job an unsent member has by implication.
    fn unsent_job(&self, device: &DeviceId, place: Place) -> Job {
        let updated_at = match self.unsent_phase() {
            JobPhase::Cancelled => self.rollout.ended_at.unwrap_or(self.rollout.created_at),
            _ => self.rollout.created_at,
        };
        Job {
            rollout: self.rollout.id,
            device: device.clone(),
            wave: place.wave as usize,
            order: place.order,
            attempt: 1,
            phase: self.unsent_phase(),
            sent_at: None,
            updated_at,
            deadline: None,
            cancelling: false,
        }
    }

    /// A device's job in this rollout, written or implied.
    fn job(&self, device: &DeviceId) -> Option<Cow<'_, Job>> {
        match self.jobs.get(device) {
            Some(job) => Some(Cow::Borrowed(job)),
            None => self.unsent.get(device).map(|p| Cow::Owned(self.unsent_job(device, *p))),
        }
    }

    /// Makes an implied job a written one (in `jobs`): what is about to change it.
    fn materialize(&mut self, device: &DeviceId) {
        if let Some(place) = self.unsent.remove(device) {
            let job = self.unsent_job(device, place);
            self.jobs.insert(device.clone(), job);
        }
    }

    /// Whether a device belongs to this rollout.
    fn has_member(&self, device: &DeviceId) -> bool {
        self.jobs.contains_key(device) || self.unsent.contains_key(device)
    }

    /// Every job, written or implied, by device.
    fn all_jobs(&self) -> impl Iterator<Item = Cow<'_, Job>> + '_ {
        let written = self.jobs.iter().map(|(d, j)| (d, Cow::Borrowed(j)));
        let implied = self.unsent.iter().map(|(d, p)| (d, Cow::Owned(self.unsent_job(d, *p))));
        merge_by_key(written, implied).map(|(_, j)| j)
    }

    /// The command for a device's current job at `now`: a cancel for a job being cancelled, else its update
    /// with the install windows of the device's zone from now on.
    fn command_for(
        &self,
        device: &DeviceId,
        image: &Image,
        bind_url_base: &str,
        zone: &str,
        now: Millis,
    ) -> Option<Publish> {
        let job = self.jobs.get(device)?;
        if job.cancelling {
            return Some((device.clone(), Command::Cancel { job_id: job.id().to_string() }));
        }
        let url = if self.rollout.use_defaults {
            format!("{}.bind", image.sha256)
        } else {
            format!("{bind_url_base}/binds/{}.bind", image.sha256)
        };
        let wave = &self.rollout.waves[job.wave];
        let command = Command::Update(UpdateCommand {
            job_id: job.id().to_string(),
            rollout_id: self.rollout.id.to_string(),
            url,
            size: image.size,
            sha256: image.sha256.to_string(),
            override_compat: self.rollout.override_compat,
            use_defaults: self.rollout.use_defaults,
            timeout_secs: Some(wave.gates.device_timeout_secs),
            install_windows: install_windows(&wave.schedule, zone, now),
        });
        Some((device.clone(), command))
    }
}

/// How far ahead a command's install windows reach, and how many it carries at most: two weeks of windows let
/// a phone that loses the broker after its download still install in its own night.
const INSTALL_WINDOWS_AHEAD: Millis = 14 * 24 * 3600 * 1000;
const MAX_INSTALL_WINDOWS: usize = 64;

/// The install windows a command carries: the schedule's, in `zone`, from `now`, in Unix seconds; none when the
/// schedule has none (the phone installs when verified).
fn install_windows(schedule: &Schedule, zone: &str, now: Millis) -> Vec<InstallWindow> {
    let windows = schedule.installs_in();
    if windows.is_empty() {
        return Vec::new();
    }
    let tz = crate::schedule::zone_or_utc(zone);
    let found = crate::schedule::occurrences(windows, &tz, now, now.saturating_add(INSTALL_WINDOWS_AHEAD));
    let mut out: Vec<InstallWindow> = found
        .into_iter()
        .take(MAX_INSTALL_WINDOWS)
        .map(|(from, until)| InstallWindow { from: from.div_ceil(1000), until: until / 1000 })
        .collect();
    if out.is_empty() {
        // Weekly windows always open within two weeks; should none, the phone must not take the empty list
        // for "install at once": one window long past says "not now".
        out.push(InstallWindow { from: 0, until: 1 });
    }
    out
}

/// Two iterators ordered by disjoint keys, as one in key order.
fn merge_by_key<K: Ord, V>(
    a: impl Iterator<Item = (K, V)>,
    b: impl Iterator<Item = (K, V)>,
) -> impl Iterator<Item = (K, V)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((ka, _)), Some((kb, _))) if kb < ka => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// The rollout engine: the fleet, the images and the rollouts, with the state derived from them.
pub struct Engine {
    /// Where agents fetch binds: `{bind_url_base}/binds/{sha256}.bind`.
    bind_url_base: String,
    devices: BTreeMap<DeviceId, Device>,
    images: BTreeMap<ImageId, Image>,
    rollouts: BTreeMap<RolloutId, Live>,
    /// In-flight jobs by deadline.
    deadlines: BTreeSet<(Millis, RolloutId, DeviceId)>,
    audit: Vec<AuditEntry>,
    /// Which images may be rolled out.
    release: ReleasePolicy,
    /// The texts the devices' hellos share.
    interner: intern::Interner,
    /// When the online devices' heartbeat deadlines are next checked; `None` while no online device beats.
    liveness_at: Option<Millis>,
    /// Analysis gates can be measured.
    analysis: bool,
}

/// The actor of what the gates decide on their own.
const SYSTEM: &str = "bindwave";
/// The audit log's actor for what the gates decided on their own.
pub const SYSTEM_ACTOR: &str = SYSTEM;

impl Engine {
    /// An empty engine; commands point agents at `{bind_url_base}/binds/{sha256}.bind`.
    pub fn new(bind_url_base: impl Into<String>) -> Self {
        Engine {
            bind_url_base: bind_url_base.into().trim_end_matches('/').to_string(),
            devices: BTreeMap::new(),
            images: BTreeMap::new(),
            rollouts: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            audit: Vec::new(),
            release: ReleasePolicy::default(),
            interner: intern::Interner::default(),
            liveness_at: None,
            analysis: true,
        }
    }

    /// Rolls out only the images `release` allows (checked when a rollout is planned or created).
    pub fn with_release_policy(mut self, release: ReleasePolicy) -> Self {
        self.release = release;
        self
    }

    /// Whether analysis gates can be measured (a Prometheus is configured); without, a rollout that has
    /// some is refused when planned or created.
    pub fn with_analysis(mut self, measurable: bool) -> Self {
        self.analysis = measurable;
        self
    }

    /// Applies an input at `now`: what it answers, and what the service must persist and then publish. A
    /// refused input changes nothing.
    pub fn handle(&mut self, input: Input, now: Millis) -> Result<(Reply, Effects), EngineError> {
        let mut fx = Effects::default();
        let reply = match input {
            Input::Hello(hello) => self.on_hello(hello, now, &mut fx),
            Input::Presence(id, p) => {
                self.on_presence(id, p, now, &mut fx);
                Reply::None
            }
            Input::Report(id, r) => self.on_report(id, r, now, &mut fx),
            Input::AddImage(image) => {
                // Added again: the same bytes, verified again, perhaps by a key trusted only now.
                let signed_by = image.signed_by;
                let stored = self.images.entry(image.sha256.clone()).or_insert(image);
                stored.signed_by = signed_by;
                let image = stored.clone();
                fx.put(Record::Image(image.clone()));
                Reply::Image(image)
            }
            Input::CreateRollout { spec, seed, actor } => {
                Reply::Rollout(self.create_rollout(*spec, seed, actor, now, &mut fx)?)
            }
            Input::Operate { rollout, action, actor, reason } => {
                Reply::Rollout(self.operate(rollout, action, &actor, &reason, now, &mut fx)?)
            }
            Input::EmergencyStop { actor, reason, abort } => {
                Reply::Stopped(self.emergency_stop(&actor, &reason, abort, now, &mut fx))
            }
            Input::Tick => {
                self.check_liveness(now, &mut fx);
                self.tick(now, &mut fx);
                self.ask_measurements(now, &mut fx);
                Reply::None
            }
            Input::Measured { rollout, wave, analysis, result } => {
                self.on_measured(rollout, wave, analysis, result, now, &mut fx);
                Reply::None
            }
        };
        Ok((reply, fx))
    }

    /// Appends to the audit log.
    fn record(
        &mut self,
        now: Millis,
        actor: &str,
        action: &str,
        rollout: Option<RolloutId>,
        reason: String,
        fx: &mut Effects,
    ) {
        let seq = self.audit.last().map_or(1, |a| a.seq + 1);
        let entry = AuditEntry { seq, at: now, actor: actor.to_string(), action: action.to_string(), rollout, reason };
        fx.put(Record::Audit(entry.clone()));
        self.audit.push(entry);
    }

    /// Changes a job's phase, keeping the tallies and deadlines in step, and records it.
    fn set_phase(&mut self, n: RolloutId, device: &DeviceId, phase: JobPhase, now: Millis, fx: &mut Effects) {
        // When this device may install, were its bind verified now: the deadline counts from there.
        let installs_from = match phase {
            JobPhase::Sent | JobPhase::Running { state: bindwave_proto::wire::JobState::Downloaded, .. } => {
                self.installs_from(n, device, now)
            }
            _ => now,
        };
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        live.materialize(device);
        let Some(job) = live.jobs.get_mut(device) else { return };
        let timeout = live.rollout.waves[job.wave].gates.device_timeout_secs.saturating_mul(1000);
        let current = job.deadline.or_else(|| job.sent_at.map(|sent| sent.saturating_add(timeout)));
        let deadline = match (&phase, current) {
            _ if !phase.in_flight() => None,
            (JobPhase::Sent, _) => Some(installs_from.saturating_add(timeout)),
            // Downloaded, waiting for its window: the time limit counts from the window's opening.
            (JobPhase::Running { state: bindwave_proto::wire::JobState::Downloaded, .. }, Some(d)) => {
                Some(d.max(installs_from.saturating_add(timeout)))
            }
            (_, d) => d,
        };
        let was = current.filter(|_| job.phase.in_flight());
        if was != deadline {
            if let Some(d) = was {
                self.deadlines.remove(&(d, n, device.clone()));
            }
            if let Some(d) = deadline {
                self.deadlines.insert((d, n, device.clone()));
            }
        }
        let newly_downloaded = phase.outcome() == crate::model::Outcome::Downloaded
            && job.phase.outcome() != crate::model::Outcome::Downloaded;
        if phase == JobPhase::Sent {
            job.sent_at = Some(now);
            job.cancelling = false;
        }
        job.deadline = deadline;
        live.tallies[job.wave].remove(job.phase.outcome());
        live.tallies[job.wave].add(phase.outcome());
        job.phase = phase;
        job.updated_at = now;
        // Progress is news, not state: a job restored as `sent` after a restart is sent again on the device's
        // hello, and the device answers from its own journal. Writing it would cost a store record and a share
        // of a flush for every progress report of every phone. A download waiting for its window is state:
        // its deadline moved.
        if !matches!(job.phase, JobPhase::Running { .. }) || newly_downloaded {
            fx.put(Record::Job(job.clone()));
        }
    }

    /// When a device of rollout `n` may install, were its bind verified at `now`: now, or when its install
    /// window next opens.
    fn installs_from(&self, n: RolloutId, device: &DeviceId, now: Millis) -> Millis {
        let Some(live) = self.rollouts.get(&n) else { return now };
        let Some(job) = live.job(device) else { return now };
        let windows = live.rollout.waves[job.wave].schedule.installs_in();
        if windows.is_empty() {
            return now;
        }
        let zone = self.zone_of(device, live.rollout.timezone.as_deref());
        let tz = crate::schedule::zone_or_utc(&zone);
        match crate::schedule::openness(windows, &tz, now) {
            Openness::Open { .. } | Openness::Closed { until: None } => now,
            Openness::Closed { until: Some(at) } => at,
        }
    }

    /// The time zone a device's windows are in: the one its hello names, if the zone database knows it; else
    /// the rollout's; else UTC.
    fn zone_of(&self, device: &DeviceId, rollout_zone: Option<&str>) -> Arc<str> {
        let reported = self.devices.get(device).and_then(|d| d.hello.as_ref()).and_then(|h| h.timezone.clone());
        match reported {
            Some(zone) if crate::schedule::zone(&zone).is_ok() => zone,
            _ => Arc::from(rollout_zone.unwrap_or("UTC")),
        }
    }

    /// The lane a device waits in, in wave `wave` of a rollout: its zone where the wave has windows, else the
    /// one lane.
    fn lane_of(&self, rollout: &Rollout, wave: usize, device: &DeviceId) -> Arc<str> {
        match rollout.waves.get(wave).is_some_and(|w| !w.schedule.windows.is_empty()) {
            true => self.zone_of(device, rollout.timezone.as_deref()),
            false => Arc::from(""),
        }
    }

    /// The command for a device's current job in a rollout.
    fn command_for(&self, n: RolloutId, device: &DeviceId, now: Millis) -> Option<Publish> {
        let live = self.rollouts.get(&n)?;
        let image = self.images.get(&live.rollout.image)?;
        let zone = self.zone_of(device, live.rollout.timezone.as_deref());
        live.command_for(device, image, &self.bind_url_base, &zone, now)
    }
}
