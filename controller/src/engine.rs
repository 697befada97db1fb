//! The rollout engine: a pure state machine.
//!
//! It takes [`Input`]s (device messages, operator actions) with the current time, changes its in-memory
//! state, and returns [`Effect`]s: records to persist and commands to send. It does no IO and reads no
//! clock. The service around it persists every `Put` (and flushes) before it sends any `Send`, so a command
//! never goes out for a state change that a crash could forget.

use std::collections::{BTreeMap, HashMap};

use bindwave_proto::compat::{decide, Decision};
use bindwave_proto::wire::{Command, DeviceId, Hello, Presence, Report, UpdateCommand};
use bindwave_proto::{BindHeader, DeviceProfile};

use crate::model::{Counts, Device, Image, Job, JobPhase, Millis, Outcome, Rollout, RolloutState};
use crate::ControllerError;

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Input {
    Hello(Hello),
    Presence(DeviceId, Presence),
    Report(DeviceId, Report),
    AddImage(Image),
    CreateRollout { image: String, devices: Selection, override_compat: bool },
    StartRollout(String),
}

/// Which devices a rollout targets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every device known when the rollout is created.
    All,
    List(Vec<DeviceId>),
}

/// What the service must do, in order: every `Put` durably, then every `Send`.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Put(Record),
    Send { device: DeviceId, command: Command },
}

/// A record to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Device(Device),
    Image(Image),
    Rollout(Rollout),
    Job(Job),
}

/// What an operator action answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    None,
    Image(Image),
    Rollout(Rollout),
}

pub struct Engine {
    /// Where agents fetch binds: `{bind_url_base}/binds/{sha256}.bind`.
    bind_url_base: String,
    devices: BTreeMap<DeviceId, Device>,
    images: BTreeMap<String, Image>,
    /// By rollout number, so `r10` sorts after `r9`.
    rollouts: BTreeMap<u64, Rollout>,
    /// Jobs by rollout number, then device.
    jobs: BTreeMap<u64, BTreeMap<DeviceId, Job>>,
    job_ids: HashMap<String, (u64, DeviceId)>,
}

/// The rollout number in an id like `r12`.
pub fn rollout_number(id: &str) -> Option<u64> {
    id.strip_prefix('r')?.parse().ok()
}

impl Engine {
    pub fn new(bind_url_base: impl Into<String>) -> Self {
        Engine {
            bind_url_base: bind_url_base.into().trim_end_matches('/').to_string(),
            devices: BTreeMap::new(),
            images: BTreeMap::new(),
            rollouts: BTreeMap::new(),
            jobs: BTreeMap::new(),
            job_ids: HashMap::new(),
        }
    }

    /// Loads a stored record at start-up.
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
                    self.rollouts.insert(n, r);
                }
            }
            Record::Job(j) => {
                if let Some(n) = rollout_number(&j.rollout) {
                    self.job_ids.insert(j.id.clone(), (n, j.device.clone()));
                    self.jobs.entry(n).or_default().insert(j.device.clone(), j);
                }
            }
        }
    }

    /// Commands that were owed when the controller stopped: every job sent but not finished. Their
    /// devices ignore a repeat of a job in hand, and answer a repeat of a finished one with its outcome.
    pub fn resume(&self) -> Vec<Effect> {
        self.all_jobs().filter(|j| j.phase.in_flight()).filter_map(|j| self.command_for(j)).collect()
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
            Input::CreateRollout { image, devices, override_compat } => {
                Reply::Rollout(self.create_rollout(&image, devices, override_compat, now, &mut fx)?)
            }
            Input::StartRollout(id) => Reply::Rollout(self.start_rollout(&id, now, &mut fx)?),
        };
        Ok((reply, fx))
    }

    fn on_hello(&mut self, hello: Hello, now: Millis, fx: &mut Vec<Effect>) {
        let id = hello.device_id.clone();
        let device = Device { id: id.clone(), hello: Some(hello), online: true, last_seen: now };
        self.devices.insert(id.clone(), device.clone());
        fx.push(Effect::Put(Record::Device(device)));
        // A device asks for its pending work by saying hello: send again what it has not finished.
        let owed: Vec<Effect> = self
            .jobs
            .values()
            .filter_map(|m| m.get(&id))
            .filter(|j| j.phase.in_flight())
            .filter_map(|j| self.command_for(j))
            .collect();
        fx.extend(owed);
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
            fx.push(Effect::Send { device: device.clone(), command: Command::Ack { job_id: report.job_id.clone() } })
        };
        let Some(key) = self.job_ids.get(&report.job_id).filter(|(_, d)| *d == device).cloned() else {
            // Not a job of ours for this device: acknowledge a final report so the device stops repeating it.
            if report.state.is_final() {
                ack(fx);
            }
            return;
        };
        let Some(job) = self.jobs.get_mut(&key.0).and_then(|m| m.get_mut(&key.1)) else { return };
        if job.phase.is_final() {
            // A repeat (QoS 1 delivers at least once, and devices repeat until acknowledged).
            if report.state.is_final() {
                ack(fx);
            }
            return;
        }
        let phase = match (report.state, report.reason.clone(), report.running_version.clone()) {
            (bindwave_proto::wire::JobState::Succeeded, _, Some(v)) => {
                JobPhase::Succeeded { running_version: v, override_used: report.override_used }
            }
            (bindwave_proto::wire::JobState::Succeeded, _, None) => {
                // A success must name what runs now; without it the report proves nothing.
                return;
            }
            (bindwave_proto::wire::JobState::Rejected, Some(reason), v) => {
                JobPhase::Rejected { reason, running_version: v }
            }
            (bindwave_proto::wire::JobState::Failed, Some(reason), v) => {
                JobPhase::Failed { reason, running_version: v }
            }
            (s, None, v) if s.is_final() => JobPhase::Failed {
                reason: bindwave_proto::wire::Reason::InstallFailed {
                    detail: format!("device reported {s} without a reason"),
                },
                running_version: v,
            },
            (state, _, _) => {
                if let JobPhase::Running { state: cur, progress } = &job.phase {
                    if state < *cur || (state == *cur && report.progress <= *progress) {
                        return; // out of order: older news
                    }
                }
                JobPhase::Running { state, progress: report.progress }
            }
        };
        let finished = phase.is_final();
        job.phase = phase;
        job.updated_at = now;
        fx.push(Effect::Put(Record::Job(job.clone())));
        if finished {
            ack(fx);
            self.finish_if_done(key.0, now, fx);
        }
    }

    fn finish_if_done(&mut self, number: u64, now: Millis, fx: &mut Vec<Effect>) {
        let done = self.jobs_of_number(number).all(|j| j.phase.is_final());
        if let Some(r) = self.rollouts.get_mut(&number) {
            if done && r.state == RolloutState::Running {
                r.state = RolloutState::Finished;
                r.finished_at = Some(now);
                fx.push(Effect::Put(Record::Rollout(r.clone())));
            }
        }
    }

    fn create_rollout(
        &mut self,
        image: &str,
        selection: Selection,
        override_compat: bool,
        now: Millis,
        fx: &mut Vec<Effect>,
    ) -> Result<Rollout, ControllerError> {
        let image = self.find_image(image)?.sha256.clone();
        let devices: Vec<DeviceId> = match selection {
            Selection::All => self.devices.keys().cloned().collect(),
            Selection::List(list) => {
                let mut list = list;
                list.sort();
                list.dedup();
                if let Some(unknown) = list.iter().find(|d| !self.devices.contains_key(*d)) {
                    return Err(ControllerError::UnknownDevice(unknown.to_string()));
                }
                list
            }
        };
        if devices.is_empty() {
            return Err(ControllerError::EmptyRollout);
        }
        let number = self.rollouts.keys().next_back().map_or(1, |n| n + 1);
        let id = format!("r{number}");
        let rollout = Rollout {
            id: id.clone(),
            image,
            devices: devices.clone(),
            override_compat,
            state: RolloutState::Created,
            created_at: now,
            started_at: None,
            finished_at: None,
        };
        self.rollouts.insert(number, rollout.clone());
        fx.push(Effect::Put(Record::Rollout(rollout.clone())));
        for device in devices {
            let job = Job {
                id: format!("{id}-{device}"),
                rollout: id.clone(),
                device: device.clone(),
                phase: JobPhase::Pending,
                sent_at: None,
                updated_at: now,
            };
            self.job_ids.insert(job.id.clone(), (number, device.clone()));
            fx.push(Effect::Put(Record::Job(job.clone())));
            self.jobs.entry(number).or_default().insert(device, job);
        }
        Ok(rollout)
    }

    fn start_rollout(&mut self, id: &str, now: Millis, fx: &mut Vec<Effect>) -> Result<Rollout, ControllerError> {
        let unknown = || ControllerError::UnknownRollout(id.to_string());
        let number = rollout_number(id).ok_or_else(unknown)?;
        let rollout = self.rollouts.get_mut(&number).ok_or_else(unknown)?;
        if rollout.state != RolloutState::Created {
            return Err(ControllerError::RolloutAlreadyStarted(id.to_string()));
        }
        rollout.state = RolloutState::Running;
        rollout.started_at = Some(now);
        let rollout = rollout.clone();
        fx.push(Effect::Put(Record::Rollout(rollout.clone())));
        let mut sends = Vec::new();
        for job in self.jobs.entry(number).or_default().values_mut() {
            job.phase = JobPhase::Sent;
            job.sent_at = Some(now);
            job.updated_at = now;
            fx.push(Effect::Put(Record::Job(job.clone())));
            sends.push(job.clone());
        }
        fx.extend(sends.iter().filter_map(|j| self.command_for(j)));
        Ok(rollout)
    }

    fn command_for(&self, job: &Job) -> Option<Effect> {
        let rollout = self.rollouts.get(&rollout_number(&job.rollout)?)?;
        let image = self.images.get(&rollout.image)?;
        Some(Effect::Send {
            device: job.device.clone(),
            command: Command::Update(UpdateCommand {
                job_id: job.id.clone(),
                rollout_id: rollout.id.clone(),
                url: format!("{}/binds/{}.bind", self.bind_url_base, image.sha256),
                size: image.size,
                sha256: image.sha256.clone(),
                override_compat: rollout.override_compat,
            }),
        })
    }

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
        self.rollouts.values()
    }

    pub fn rollout(&self, id: &str) -> Option<&Rollout> {
        self.rollouts.get(&rollout_number(id)?)
    }

    pub fn jobs_of(&self, id: &str) -> impl Iterator<Item = &Job> {
        self.jobs_of_number(rollout_number(id).unwrap_or(u64::MAX))
    }

    fn jobs_of_number(&self, number: u64) -> impl Iterator<Item = &Job> {
        self.jobs.get(&number).into_iter().flat_map(|m| m.values())
    }

    fn all_jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values().flat_map(|m| m.values())
    }

    pub fn counts(&self, id: &str) -> Counts {
        let mut counts: Counts = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
        for job in self.jobs_of(id) {
            *counts.entry(job.phase.outcome()).or_default() += 1;
        }
        counts
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

#[cfg(test)]
mod tests {
    use super::*;
    use bindwave_proto::wire::{JobState, LevelSource, Reason};
    use bindwave_proto::HardwareLevel;

    fn id(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    fn hello(device: &str, level: u16) -> Hello {
        Hello {
            device_id: id(device),
            part_number: "P".into(),
            hardware_level: HardwareLevel(level),
            hardware_level_source: LevelSource::PartNumber,
            software_version: "V3 R1.0.0".parse().unwrap(),
            minimum_software_version: "V3 R1.0.0".parse().unwrap(),
            agent_version: "test".into(),
        }
    }

    fn image() -> Image {
        Image {
            sha256: "ab".repeat(32),
            size: 100,
            software_version: "V3 R3.18.0".parse().unwrap(),
            hardware_levels: Some(vec![HardwareLevel(3)]),
            payload_sha256: "cd".repeat(32),
            payload_len: 50,
            added_at: 0,
        }
    }

    fn report(job: &str, state: JobState) -> Report {
        Report { job_id: job.into(), state, progress: None, running_version: None, reason: None, override_used: false }
    }

    fn succeeded(job: &str) -> Report {
        Report { running_version: Some("V3 R3.18.0".parse().unwrap()), ..report(job, JobState::Succeeded) }
    }

    /// An engine with two devices, an image, and rollout r1 to both, started.
    fn started() -> Engine {
        let mut e = Engine::new("http://ctl:8080/");
        e.handle(Input::Hello(hello("a", 3)), 1).unwrap();
        e.handle(Input::Hello(hello("b", 2)), 1).unwrap();
        e.handle(Input::AddImage(image()), 2).unwrap();
        e.handle(Input::CreateRollout { image: "abab".repeat(2), devices: Selection::All, override_compat: false }, 3)
            .unwrap();
        e.handle(Input::StartRollout("r1".into()), 4).unwrap();
        e
    }

    fn sends(fx: &[Effect]) -> Vec<(String, Command)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send { device, command } => Some((device.to_string(), command.clone())),
                Effect::Put(_) => None,
            })
            .collect()
    }

    fn puts(fx: &[Effect]) -> usize {
        fx.iter().filter(|e| matches!(e, Effect::Put(_))).count()
    }

    #[test]
    fn start_persists_then_commands_every_device() {
        let mut e = Engine::new("http://ctl:8080/");
        e.handle(Input::Hello(hello("a", 3)), 1).unwrap();
        e.handle(Input::AddImage(image()), 2).unwrap();
        let (reply, fx) = e
            .handle(Input::CreateRollout { image: "ababab".into(), devices: Selection::All, override_compat: true }, 3)
            .unwrap();
        assert!(matches!(reply, Reply::Rollout(ref r) if r.id == "r1" && r.state == RolloutState::Created));
        assert!(sends(&fx).is_empty(), "creating sends nothing");
        let (_, fx) = e.handle(Input::StartRollout("r1".into()), 4).unwrap();
        let first_send = fx.iter().position(|e| matches!(e, Effect::Send { .. })).unwrap();
        assert!(fx[..first_send].iter().all(|e| matches!(e, Effect::Put(_))), "records come before commands");
        let s = sends(&fx);
        assert_eq!(s.len(), 1);
        let Command::Update(cmd) = &s[0].1 else { panic!("{s:?}") };
        assert_eq!(cmd.url, format!("http://ctl:8080/binds/{}.bind", "ab".repeat(32)));
        assert_eq!((cmd.job_id.as_str(), cmd.size, cmd.override_compat), ("r1-a", 100, true));
        assert!(matches!(
            e.handle(Input::StartRollout("r1".into()), 5),
            Err(ControllerError::RolloutAlreadyStarted(_))
        ));
    }

    #[test]
    fn bad_rollout_requests_are_refused() {
        let mut e = Engine::new("http://x");
        let create =
            |image: &str, devices| Input::CreateRollout { image: image.into(), devices, override_compat: false };
        assert!(matches!(e.handle(create("ababab", Selection::All), 0), Err(ControllerError::UnknownImage(_))));
        e.handle(Input::AddImage(image()), 0).unwrap();
        assert!(
            matches!(e.handle(create("abab", Selection::All), 0), Err(ControllerError::UnknownImage(_))),
            "prefix too short"
        );
        assert!(matches!(e.handle(create("ababab", Selection::All), 0), Err(ControllerError::EmptyRollout)));
        assert!(matches!(
            e.handle(create("ababab", Selection::List(vec![id("ghost")])), 0),
            Err(ControllerError::UnknownDevice(_))
        ));
        assert!(matches!(e.handle(Input::StartRollout("r9".into()), 0), Err(ControllerError::UnknownRollout(_))));
        assert!(matches!(e.handle(Input::StartRollout("x".into()), 0), Err(ControllerError::UnknownRollout(_))));
    }

    #[test]
    fn final_reports_are_recorded_once_and_always_acknowledged() {
        let mut e = started();
        let (_, fx) = e.handle(Input::Report(id("a"), succeeded("r1-a")), 10).unwrap();
        assert_eq!(puts(&fx), 1);
        assert_eq!(sends(&fx), vec![("a".into(), Command::Ack { job_id: "r1-a".into() })]);
        // The repeat changes nothing but is acknowledged again.
        let (_, fx) = e.handle(Input::Report(id("a"), succeeded("r1-a")), 11).unwrap();
        assert_eq!(puts(&fx), 0);
        assert_eq!(sends(&fx).len(), 1);
        // A late progress report does not reopen the job.
        let (_, fx) = e.handle(Input::Report(id("a"), report("r1-a", JobState::Downloading)), 12).unwrap();
        assert!(fx.is_empty());
        assert_eq!(e.counts("r1")[&Outcome::Succeeded], 1);
    }

    #[test]
    fn out_of_order_progress_is_ignored() {
        let mut e = started();
        let at = |p| Report { progress: Some(p), ..report("r1-a", JobState::Downloading) };
        assert_eq!(puts(&e.handle(Input::Report(id("a"), at(50)), 5).unwrap().1), 1);
        assert!(e.handle(Input::Report(id("a"), at(40)), 6).unwrap().1.is_empty());
        assert!(e.handle(Input::Report(id("a"), report("r1-a", JobState::Received)), 6).unwrap().1.is_empty());
        assert_eq!(puts(&e.handle(Input::Report(id("a"), report("r1-a", JobState::Verifying)), 7).unwrap().1), 1);
    }

    #[test]
    fn reports_for_another_device_or_unknown_jobs_change_nothing() {
        let mut e = started();
        // b claims a's job.
        let (_, fx) = e.handle(Input::Report(id("b"), succeeded("r1-a")), 5).unwrap();
        assert_eq!(puts(&fx), 0);
        assert_eq!(e.counts("r1")[&Outcome::InProgress], 2);
        // An unknown job's final report is acknowledged so the device stops repeating it; progress is not.
        let (_, fx) = e.handle(Input::Report(id("a"), report("zzz", JobState::Downloading)), 5).unwrap();
        assert!(fx.is_empty());
        let failed =
            Report { reason: Some(Reason::DownloadFailed { detail: "x".into() }), ..report("zzz", JobState::Failed) };
        let (_, fx) = e.handle(Input::Report(id("a"), failed), 5).unwrap();
        assert_eq!((puts(&fx), sends(&fx).len()), (0, 1));
    }

    #[test]
    fn a_success_must_say_what_runs_now() {
        let mut e = started();
        let (_, fx) = e.handle(Input::Report(id("a"), report("r1-a", JobState::Succeeded)), 5).unwrap();
        assert!(fx.is_empty());
        assert_eq!(e.counts("r1")[&Outcome::Succeeded], 0);
    }

    #[test]
    fn outcomes_are_classified_and_the_rollout_finishes() {
        let mut e = started();
        e.handle(Input::Report(id("a"), succeeded("r1-a")), 5).unwrap();
        assert_eq!(e.rollout("r1").unwrap().state, RolloutState::Running);
        let rejected = Report {
            reason: Some(Reason::HardwareLevelIncompatible {
                device_level: HardwareLevel(2),
                bind_levels: vec![HardwareLevel(3)],
            }),
            running_version: Some("V3 R1.0.0".parse().unwrap()),
            ..report("r1-b", JobState::Rejected)
        };
        let (_, fx) = e.handle(Input::Report(id("b"), rejected), 6).unwrap();
        assert!(fx.iter().any(|f| matches!(f, Effect::Put(Record::Rollout(r)) if r.state == RolloutState::Finished)));
        let counts = e.counts("r1");
        assert_eq!((counts[&Outcome::Succeeded], counts[&Outcome::RejectedHardware]), (1, 1));
        assert_eq!(e.rollout("r1").unwrap().finished_at, Some(6));
    }

    #[test]
    fn hello_of_a_device_with_unfinished_work_resends_it() {
        let mut e = started();
        e.handle(Input::Report(id("a"), succeeded("r1-a")), 5).unwrap();
        let (_, fx) = e.handle(Input::Hello(hello("b", 2)), 6).unwrap();
        let s = sends(&fx);
        assert_eq!(s.len(), 1);
        assert!(matches!(&s[0].1, Command::Update(c) if c.job_id == "r1-b"));
        // a finished: its hello sends nothing.
        assert!(sends(&e.handle(Input::Hello(hello("a", 3)), 7).unwrap().1).is_empty());
    }

    #[test]
    fn presence_is_recorded_only_when_it_changes() {
        let mut e = started();
        assert_eq!(puts(&e.handle(Input::Presence(id("a"), Presence { online: false }), 5).unwrap().1), 1);
        assert_eq!(puts(&e.handle(Input::Presence(id("a"), Presence { online: false }), 6).unwrap().1), 0);
        assert!(!e.devices().find(|d| d.id == id("a")).unwrap().online);
    }

    #[test]
    fn restoring_the_records_rebuilds_the_same_state() {
        let mut e = Engine::new("http://x");
        let mut records = Vec::new();
        let mut run = |e: &mut Engine, input, now| {
            let (_, fx) = e.handle(input, now).unwrap();
            records.extend(fx.into_iter().filter_map(|f| if let Effect::Put(r) = f { Some(r) } else { None }));
        };
        run(&mut e, Input::Hello(hello("a", 3)), 1);
        run(&mut e, Input::Hello(hello("b", 2)), 1);
        run(&mut e, Input::AddImage(image()), 2);
        run(
            &mut e,
            Input::CreateRollout { image: "ababab".into(), devices: Selection::All, override_compat: false },
            3,
        );
        run(&mut e, Input::StartRollout("r1".into()), 4);
        run(&mut e, Input::Report(id("a"), succeeded("r1-a")), 5);

        let mut restored = Engine::new("http://x");
        for r in records {
            restored.restore(r);
        }
        assert_eq!(restored.counts("r1"), e.counts("r1"));
        assert_eq!(restored.rollout("r1"), e.rollout("r1"));
        // Only b's command is owed.
        let owed = sends(&restored.resume());
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].0, "b");
        // Numbering continues.
        let (reply, _) = restored
            .handle(Input::CreateRollout { image: "ababab".into(), devices: Selection::All, override_compat: false }, 9)
            .unwrap();
        assert!(matches!(reply, Reply::Rollout(r) if r.id == "r2"));
    }

    #[test]
    fn predictions_use_the_agents_rule() {
        let e = started();
        let img = image();
        assert!(e.predict(&img, &id("a"), false).unwrap().proceeds());
        assert!(!e.predict(&img, &id("b"), false).unwrap().proceeds());
        assert!(e.predict(&img, &id("b"), true).unwrap().override_used());
        assert!(e.predict(&img, &id("nobody"), false).is_none());
    }
}
