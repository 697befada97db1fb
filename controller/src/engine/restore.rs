//! Start-up: the engine rebuilt from its stored records, and the commands still owed.

use super::{Effects, Engine, Live, Record};
use crate::model::{Job, JobPhase};

impl Engine {
    /// Loads a stored record at start-up. Rollouts before their jobs.
    pub fn restore(&mut self, record: Record) {
        match record {
            Record::Device(d) => {
                self.devices.insert(d.id.clone(), *d);
            }
            Record::Image(i) => {
                self.images.insert(i.sha256.clone(), i);
            }
            Record::Rollout(r) => match self.rollouts.get_mut(&r.id) {
                // A later version of a rollout keeps the jobs already restored.
                Some(live) if live.rollout.waves.len() == r.waves.len() => live.rollout = *r,
                _ => {
                    self.rollouts.insert(r.id, Live::new(*r));
                }
            },
            Record::Job(j) => {
                let n = j.rollout;
                let Some(live) = self.rollouts.get_mut(&n) else { return };
                if j.wave >= live.tallies.len() {
                    return;
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
    /// commands still owed (every job sent and not finished), with nothing to persist. Devices ignore a repeat
    /// of a job in hand and answer a repeat of a finished one with its outcome.
    pub fn resume(&mut self) -> Effects {
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
        let mut owed = Effects::default();
        for live in self.rollouts.values() {
            let Some(image) = self.images.get(&live.rollout.image) else { continue };
            for job in live.jobs.values().filter(|j| j.phase.in_flight()) {
                if let Some((device, command)) = live.command_for(&job.device, image, &self.bind_url_base) {
                    owed.send(device, command);
                }
            }
        }
        owed
    }
}
