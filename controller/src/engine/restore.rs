//! Start-up: the engine rebuilt from its stored records, and the commands still owed.

use std::sync::Arc;

use bindwave_proto::wire::DeviceId;

use super::{Effects, Engine, Live, Place, Record};
use crate::model::{Job, JobPhase, Millis, RolloutId};
use crate::schedule::Pace;

impl Engine {
    /// Loads a stored record at start-up: rollouts before their members, members before their jobs.
    pub fn restore(&mut self, record: Record) {
        match record {
            Record::Device(d) => {
                let mut d = *d;
                // Online state is re-established after a restart, never restored: a phone that died while no
                // broker could publish its last will would stay online forever. Each phone that is still
                // there says so again: the embedded broker starts empty and every phone reconnects with its
                // hello; an external broker hands the controller each phone's retained presence.
                d.online = false;
                // One id, shared by the record and its hello (and later by the device's jobs and queues).
                if let Some(hello) = d.hello.as_mut() {
                    if hello.device_id == d.id {
                        hello.device_id = d.id.clone();
                    }
                    self.interner.hello(hello);
                }
                self.devices.insert(d.id.clone(), d);
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
            Record::Members(m) => {
                let Some(live) = self.rollouts.get_mut(&m.rollout) else { return };
                if m.wave >= live.tallies.len() {
                    return;
                }
                for (i, device) in m.devices.into_iter().enumerate() {
                    // A damaged record's places past the last plan order are not members.
                    let Some(order) = u32::try_from(i).ok().and_then(|i| m.first.checked_add(i)) else { break };
                    if !live.jobs.contains_key(&device) {
                        let device = self.devices.get_key_value(&device).map_or(device, |(k, _)| k.clone());
                        live.unsent.insert(device, Place { wave: m.wave as u32, order });
                    }
                }
            }
            Record::Job(j) => {
                let n = j.rollout;
                let Some(live) = self.rollouts.get_mut(&n) else { return };
                if j.wave >= live.tallies.len() {
                    return;
                }
                // A written job replaces the one its membership implied.
                live.unsent.remove(&j.device);
                let deadline = |job: &Job| {
                    let timeout = live.rollout.waves[job.wave].gates.device_timeout_secs.saturating_mul(1000);
                    // A record written before jobs kept their deadline: the timeout after the command.
                    let at = job.deadline.or_else(|| job.sent_at.map(|sent| sent.saturating_add(timeout)));
                    at.filter(|_| job.phase.in_flight()).map(|d| (d, n, job.device.clone()))
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

    /// Call once after every record is restored: counts the members never commanded, rebuilds the dispatch
    /// queues in plan order (in their time zones' lanes), and returns the commands still owed at `now` (every
    /// job sent and not finished), with nothing to persist. Devices ignore a repeat of a job in hand and answer
    /// a repeat of a finished one with its outcome.
    pub fn resume(&mut self, now: Millis) -> Effects {
        self.audit.sort_by_key(|a| a.seq);
        let ids: Vec<RolloutId> = self.rollouts.keys().copied().collect();
        for n in ids {
            let Some(live) = self.rollouts.get_mut(&n) else { continue };
            let unsent_outcome = live.unsent_phase().outcome();
            for place in live.unsent.values() {
                live.tallies[place.wave as usize].add(unsent_outcome);
            }
            let live = &self.rollouts[&n];
            let written =
                live.jobs.values().filter(|j| j.phase == JobPhase::Pending).map(|j| (j.wave, j.order, &j.device));
            let implied = live
                .unsent
                .iter()
                .filter(|_| unsent_outcome == crate::model::Outcome::Pending)
                .map(|(d, p)| (p.wave as usize, p.order, d));
            let mut pending: Vec<_> = written.chain(implied).collect();
            pending.sort_by_key(|(wave, order, _)| (*wave, *order));
            let queued: Vec<(usize, DeviceId, Arc<str>)> = pending
                .into_iter()
                .map(|(wave, _, d)| (wave, d.clone(), self.lane_of(&live.rollout, wave, d)))
                .collect();
            let Some(live) = self.rollouts.get_mut(&n) else { continue };
            for q in &mut live.queues {
                q.clear();
            }
            for (wave, device, lane) in queued {
                live.queues[wave].push_back(device, lane);
            }
            // A soaking wave's analyses are measured again: measurements are not stored.
            if let crate::model::RolloutState::Active { wave, stage: crate::model::Stage::Soaking { .. } } =
                live.rollout.state
            {
                let analyses = &live.rollout.waves[wave].gates.analyses;
                live.analysis = (!analyses.is_empty()).then(|| super::analysis::AnalysisRun {
                    wave,
                    from: now,
                    each: vec![Default::default(); analyses.len()],
                });
            }
            // The wave in progress paces on from the commands it has sent (a ramp from the step they reached).
            if let Some(wave) = live.rollout.state.wave() {
                let sent = live.tallies[wave].total() - live.tallies[wave].get(crate::model::Outcome::Pending);
                live.pace = Pace::resumed(sent as u64);
            }
            let written = live.jobs.values().map(|j| (j.order, j.device.clone()));
            live.by_order = written.chain(live.unsent.iter().map(|(d, p)| (p.order, d.clone()))).collect();
            live.by_order.sort_unstable();
        }
        let mut owed = Effects::default();
        for (n, live) in &self.rollouts {
            for job in live.jobs.values().filter(|j| j.phase.in_flight()) {
                if let Some((device, command)) = self.command_for(*n, &job.device, now) {
                    owed.send(device, command);
                }
            }
        }
        owed
    }
}
