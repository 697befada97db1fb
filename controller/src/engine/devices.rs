//! What devices say: hello (who they are, and a request for their unfinished work), presence, and reports
//! on their jobs.
//!
//! What a device says is believed only as far as it can be checked:
//! - a report counts only for a job of that device that was sent to it; a success only if the device names
//!   the image's version as what it runs (anything else is a failure, `version_mismatch`);
//! - a hello may change a known device's hardware level only with the hardware probe as its source: a part
//!   number or a configured value does not change what a phone's hardware is, so such a change is refused and
//!   the stored level kept.

use bindwave_proto::wire::{Command, DeviceId, Hello, JobState, LevelSource, Presence, Reason, Report};

use super::{Effects, Engine, Record, Refusal, Refused, Reply};
use crate::model::{Device, Job, JobId, JobPhase, Millis, Outcome, RolloutId};

impl Engine {
    pub(super) fn on_hello(&mut self, mut hello: Hello, now: Millis, fx: &mut Effects) -> Reply {
        // A known device keeps the id its inventory, rollouts and queues already share.
        let id =
            self.devices.get_key_value(&hello.device_id).map_or_else(|| hello.device_id.clone(), |(k, _)| k.clone());
        hello.device_id = id.clone();
        self.interner.hello(&mut hello);
        let known = self.devices.get(&id).and_then(|d| d.hello.as_ref());
        let reply = match known {
            Some(old) if old.hardware_level != hello.hardware_level => {
                let (from, to) = (old.hardware_level, hello.hardware_level);
                if hello.hardware_level_source == LevelSource::Probe {
                    Reply::LevelChanged { device: id.clone(), from, to }
                } else {
                    let detail = format!(
                        "hello changes the hardware level from {from} to {to} by the {}, not the hardware probe: \
                         level {from} is kept",
                        hello.hardware_level_source.as_str()
                    );
                    (hello.hardware_level, hello.hardware_level_source, hello.hardware_level_conflict) =
                        (old.hardware_level, old.hardware_level_source, old.hardware_level_conflict);
                    Reply::Refused(Refusal { what: Refused::HardwareLevelChange, device: id.clone(), detail })
                }
            }
            _ => Reply::None,
        };
        // The record is replaced below: its history moves over, not copied.
        let mut changes = self.devices.get_mut(&id).map(|d| std::mem::take(&mut d.changes)).unwrap_or_default();
        if let Some(old) = self.devices.get(&id).and_then(|d| d.hello.as_ref()) {
            crate::model::note_hello_change(&mut changes, old, &hello, now);
        }
        let device = Device { id: id.clone(), hello: Some(hello), online: true, last_seen: now, changes };
        self.devices.insert(id.clone(), device.clone());
        self.heard(&id, now);
        fx.put(Record::Device(Box::new(device.clone())));
        // A device asks for its pending work by saying hello: send again what it has not finished.
        let owed: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(_, l)| l.jobs.get(&id).is_some_and(|j| j.phase.in_flight()))
            .map(|(n, _)| *n)
            .collect();
        for n in owed {
            if let Some((device, command)) = self.command_for(n, &id, now) {
                fx.send(device, command);
            }
        }
        // Rollouts that follow their filter take in a device they have not seen.
        let joining: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(_, l)| {
                l.rollout.targets.follow
                    && !l.rollout.state.is_over()
                    && !l.has_member(&id)
                    && l.rollout.targets.matches(&device)
            })
            .map(|(n, _)| *n)
            .collect();
        for n in joining {
            self.join(n, &id, now, fx);
            self.advance(n, now, fx);
        }
        reply
    }

    /// Adds a device that appeared later to a following rollout's last wave.
    fn join(&mut self, n: RolloutId, device: &DeviceId, now: Millis, fx: &mut Effects) {
        let Some(last) = self.rollouts.get(&n).and_then(|l| l.rollout.waves.len().checked_sub(1)) else { return };
        let lane = self.lane_of(&self.rollouts[&n].rollout, last, device);
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let Some(wave) = live.rollout.waves.len().checked_sub(1) else { return };
        let order = live.next_order();
        live.by_order.push((order, device.clone()));
        let job = Job {
            rollout: n,
            device: device.clone(),
            wave,
            order,
            attempt: 1,
            phase: JobPhase::Pending,
            sent_at: None,
            updated_at: now,
            deadline: None,
            cancelling: false,
        };
        live.rollout.waves[wave].devices += 1;
        live.tallies[wave].add(Outcome::Pending);
        live.queues[wave].push_back(device.clone(), lane);
        fx.put(Record::Job(job.clone()));
        fx.put(Record::Rollout(Box::new(live.rollout.clone())));
        live.jobs.insert(device.clone(), job);
    }

    pub(super) fn on_presence(&mut self, id: DeviceId, p: Presence, now: Millis, fx: &mut Effects) {
        let device = self.devices.entry(id.clone()).or_insert_with(|| Device {
            id,
            hello: None,
            online: false,
            last_seen: now,
            changes: Vec::new(),
        });
        // A presence that repeats what is known is a heartbeat: kept in memory, not written.
        if device.online != p.online {
            device.online = p.online;
            device.last_seen = now;
            fx.put(Record::Device(Box::new(device.clone())));
        }
        let id = device.id.clone();
        self.heard(&id, now);
    }

    pub(super) fn on_report(&mut self, device: DeviceId, report: Report, now: Millis, fx: &mut Effects) -> Reply {
        self.heard(&device, now);
        let ack = |fx: &mut Effects| {
            if report.state.is_final() {
                fx.send(device.clone(), Command::Ack { job_id: report.job_id.clone() });
            }
        };
        let refused = |what, detail: String| Reply::Refused(Refusal { what, device: device.clone(), detail });
        // The job id as the device sent it, read with the device: anything else is not a job of ours for it.
        let Some(job_id) = JobId::parse(&report.job_id, &device) else {
            // Acknowledge a final report so the device stops repeating it.
            ack(fx);
            return if self.names_a_job(&report.job_id) {
                refused(Refused::OtherDevicesJob, format!("report for job {:?}, another device's", report.job_id))
            } else {
                refused(Refused::UnknownJob, format!("report for job {:?}, which is no job of ours", report.job_id))
            };
        };
        let n = job_id.rollout();
        let Some(live) = self.rollouts.get(&n) else {
            ack(fx);
            return refused(Refused::UnknownJob, format!("report for job {job_id} of an unknown rollout"));
        };
        let Some(job) = live.job(&device) else {
            ack(fx);
            return refused(Refused::UnknownJob, format!("report for job {job_id}: the device is not in rollout {n}"));
        };
        if job.attempt != job_id.attempt() {
            // Another attempt's (QoS 1 delivers at least once; devices repeat until acknowledged).
            ack(fx);
            return Reply::None;
        }
        if matches!(job.phase, JobPhase::Pending | JobPhase::Cancelled) {
            // Never commanded: nothing the device says about it can be true.
            return refused(Refused::JobNotSent, format!("report {} for job {job_id}, never sent", report.state));
        }
        if job.phase.is_final() && job.phase != JobPhase::TimedOut {
            // A repeat.
            ack(fx);
            return Reply::None;
        }
        let expected = self.images.get(&live.rollout.image).map(|i| i.software_version.clone());
        let phase = match (report.state, report.reason.clone(), report.running_version.clone()) {
            (JobState::Succeeded, _, running) if running.is_none() || running != expected => match expected {
                // A success must name what runs now, and that must be the image's version.
                Some(expected) => JobPhase::Failed {
                    reason: Reason::VersionMismatch { expected, running: running.clone() },
                    running_version: running,
                },
                None => return Reply::None,
            },
            (JobState::Succeeded, _, Some(v)) => {
                JobPhase::Succeeded { running_version: v, override_used: report.override_used }
            }
            (JobState::Succeeded, _, None) => return Reply::None,
            (JobState::Rejected, Some(reason), v) => JobPhase::Rejected { reason, running_version: v },
            // Stopped by a cancel before its install began: the device runs what it ran.
            (JobState::Cancelled, _, _) => JobPhase::Cancelled,
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
                    JobPhase::TimedOut => return Reply::None,
                    JobPhase::Running { state: cur, progress }
                        if state < *cur || (state == *cur && report.progress <= *progress) =>
                    {
                        return Reply::None; // out of order: older news
                    }
                    _ => {}
                }
                JobPhase::Running { state, progress: report.progress }
            }
        };
        let finished = phase.is_final();
        // A download waiting for its install window frees its place in the concurrency limit.
        let downloaded = phase.outcome() == crate::model::Outcome::Downloaded && job.phase.outcome() != phase.outcome();
        self.set_phase(n, &device, phase, now, fx);
        if finished {
            ack(fx);
        }
        if finished || downloaded {
            self.advance(n, now, fx);
        }
        Reply::None
    }

    /// Whether `text` is the job id of some device's job: `r<n>-<device>` or `r<n>-<device>.<attempt>` for a
    /// device in rollout `n`.
    fn names_a_job(&self, text: &str) -> bool {
        let Some((rollout, rest)) = text.split_once('-') else { return false };
        let Some(live) = RolloutId::parse(rollout).and_then(|n| self.rollouts.get(&n)) else { return false };
        let candidates = [Some(rest), rest.rsplit_once('.').map(|(d, _)| d)];
        candidates
            .into_iter()
            .flatten()
            .filter_map(|d| DeviceId::new(d).ok())
            .any(|d| live.job(&d).is_some_and(|j| JobId::parse(text, &d).is_some_and(|id| id.attempt() == j.attempt)))
    }
}
