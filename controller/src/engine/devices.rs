//! What devices say: hello (who they are, and a request for their unfinished work), presence, and reports
//! on their jobs.

use bindwave_proto::wire::{Command, DeviceId, Hello, JobState, Presence, Reason, Report};

use super::{Effects, Engine, Record};
use crate::model::{Device, Job, JobId, JobPhase, Millis, Outcome, RolloutId};

impl Engine {
    pub(super) fn on_hello(&mut self, hello: Hello, now: Millis, fx: &mut Effects) {
        let id = hello.device_id.clone();
        let device = Device { id: id.clone(), hello: Some(hello), online: true, last_seen: now };
        self.devices.insert(id.clone(), device.clone());
        fx.put(Record::Device(device.clone()));
        // A device asks for its pending work by saying hello: send again what it has not finished.
        let owed: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(_, l)| l.jobs.get(&id).is_some_and(|j| j.phase.in_flight()))
            .map(|(n, _)| *n)
            .collect();
        for n in owed {
            if let Some((device, command)) = self.command_for(n, &id) {
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
    fn join(&mut self, n: RolloutId, device: &DeviceId, now: Millis, fx: &mut Effects) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let Some(wave) = live.rollout.waves.len().checked_sub(1) else { return };
        let order = live.jobs.values().map(|j| j.order + 1).max().unwrap_or(0);
        let job = Job {
            rollout: n,
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
        fx.put(Record::Job(job.clone()));
        fx.put(Record::Rollout(live.rollout.clone()));
        live.jobs.insert(device.clone(), job);
    }

    pub(super) fn on_presence(&mut self, id: DeviceId, p: Presence, now: Millis, fx: &mut Effects) {
        let device =
            self.devices.entry(id.clone()).or_insert_with(|| Device { id, hello: None, online: false, last_seen: now });
        if device.online != p.online {
            device.online = p.online;
            device.last_seen = now;
            fx.put(Record::Device(device.clone()));
        }
    }

    pub(super) fn on_report(&mut self, device: DeviceId, report: Report, now: Millis, fx: &mut Effects) {
        let ack = |fx: &mut Effects| {
            if report.state.is_final() {
                fx.send(device.clone(), Command::Ack { job_id: report.job_id.clone() });
            }
        };
        // The job id as the device sent it, read with the device: anything else is not a job of ours for it.
        let Some(job_id) = JobId::parse(&report.job_id, &device) else {
            // Acknowledge a final report so the device stops repeating it.
            return ack(fx);
        };
        let n = job_id.rollout();
        let Some(job) = self.rollouts.get(&n).and_then(|l| l.jobs.get(&device)) else { return ack(fx) };
        if job.attempt != job_id.attempt() || (job.phase.is_final() && job.phase != JobPhase::TimedOut) {
            // Another attempt, or a repeat (QoS 1 delivers at least once; devices repeat until acknowledged).
            return ack(fx);
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
}
