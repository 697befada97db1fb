//! What operators do: act on one rollout ([`Action`]), retry its failed devices, or stop every rollout under
//! way at once.

use bindwave_proto::wire::DeviceId;

use super::{Action, Effects, Engine, EngineError, Record};
use crate::model::{Baseline, Cause, GateAction, Job, JobPhase, Millis, Rollout, RolloutId, RolloutState, Stage};

impl Engine {
    /// Applies an operator's action to a rollout, if its state allows it, records it, and lets the gates
    /// move the rollout on.
    pub(super) fn operate(
        &mut self,
        n: RolloutId,
        action: Action,
        actor: &str,
        reason: &str,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<Rollout, EngineError> {
        let live = self.rollouts.get(&n).ok_or_else(|| EngineError::UnknownRollout(n.to_string()))?;
        let state = live.rollout.state.clone();
        let refuse = || EngineError::InvalidAction { rollout: n, action: action.as_str(), state: state.name() };
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
                fx.put(Record::Rollout(Box::new(live.rollout.clone())));
            }
            (Action::Pause, RolloutState::Active { wave, stage }) => {
                self.stop(n, wave, stage, operator, GateAction::Pause, actor, now, fx);
                return self.current(n);
            }
            (Action::Abort, s) if !s.is_over() => {
                let wave = s.wave().unwrap_or(0);
                self.stop(n, wave, Stage::Updating, operator, GateAction::Abort, actor, now, fx);
                return self.current(n);
            }
            (Action::Cancel, s) if !matches!(s, RolloutState::Finished) => {
                if !s.is_over() {
                    let wave = s.wave().unwrap_or(0);
                    self.stop(n, wave, Stage::Updating, operator, GateAction::Abort, actor, now, fx);
                }
                let sent = self.cancel_in_flight(n, now, fx);
                let why = format!("{reason} (a cancel sent to {sent} commanded device(s))");
                self.record(now, actor, action.as_str(), Some(n), why, fx);
                return self.current(n);
            }
            (Action::Resume, RolloutState::Paused { wave, stage, cause }) => {
                let live = self.rollouts.get_mut(&n).ok_or_else(refuse)?;
                // The thresholds watch what happens from now on.
                let t = live.total();
                live.rollout.baseline = Baseline { failed: t.failed(), finished: t.finished(), rejected: t.rejected() };
                live.rollout.state = RolloutState::Active { wave, stage };
                fx.put(Record::Rollout(Box::new(live.rollout.clone())));
                if matches!(cause, Cause::SuccessGate { .. }) {
                    // The operator accepts the wave as it is.
                    self.pass_wave(n, wave, now, fx);
                } else if matches!(stage, Stage::Soaking { .. }) {
                    // A soaking wave's analyses are measured again from now (the pause may have been theirs).
                    self.start_analysis(n, wave, now);
                }
            }
            (Action::Approve, RolloutState::Active { wave, stage: Stage::AwaitingApproval }) => {
                let live = self.rollouts.get_mut(&n).ok_or_else(refuse)?;
                live.rollout.waves[wave].approved_by = Some(actor.to_string());
                live.rollout.waves[wave].started_at = Some(now);
                live.rollout.state = RolloutState::Active { wave, stage: Stage::Updating };
                fx.put(Record::Rollout(Box::new(live.rollout.clone())));
            }
            (Action::Retry, RolloutState::Active { .. } | RolloutState::Paused { .. } | RolloutState::Finished) => {
                self.retry(n, now, fx);
            }
            _ => return Err(refuse()),
        }
        self.record(now, actor, action.as_str(), Some(n), reason.to_string(), fx);
        // The first wave starts with the rollout (or waits for its approval), a wave waiting for approval with it.
        if let (Action::Start | Action::Approve, Some(live)) = (action, self.rollouts.get(&n)) {
            if let RolloutState::Active { wave, stage } = live.rollout.state {
                let why = if stage == Stage::AwaitingApproval { "waits for approval" } else { "started" };
                self.record(now, super::SYSTEM, "wave", Some(n), format!("wave {} {why}", wave + 1), fx);
            }
        }
        self.advance(n, now, fx);
        self.current(n)
    }

    /// A rollout as it stands.
    fn current(&self, n: RolloutId) -> Result<Rollout, EngineError> {
        self.rollouts.get(&n).map(|l| l.rollout.clone()).ok_or_else(|| EngineError::UnknownRollout(n.to_string()))
    }

    /// Failed and timed-out devices of the started waves get a new attempt; rejections are never retried.
    fn retry(&mut self, n: RolloutId, now: Millis, fx: &mut Effects) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let mut again: Vec<&Job> =
            live.jobs.values().filter(|j| matches!(j.phase, JobPhase::Failed { .. } | JobPhase::TimedOut)).collect();
        again.sort_by_key(|j| (j.wave, j.order));
        let again: Vec<(DeviceId, usize)> = again.into_iter().map(|j| (j.device.clone(), j.wave)).collect();
        if let RolloutState::Finished = live.rollout.state {
            let last = live.rollout.waves.len().saturating_sub(1);
            live.rollout.state = RolloutState::Active { wave: last, stage: Stage::Updating };
            live.rollout.ended_at = None;
            fx.put(Record::Rollout(Box::new(live.rollout.clone())));
        }
        for (device, wave) in again {
            let Some(lane) = self.rollouts.get(&n).map(|l| self.lane_of(&l.rollout, wave, &device)) else { return };
            let Some(live) = self.rollouts.get_mut(&n) else { return };
            let Some(job) = live.jobs.get_mut(&device) else { continue };
            // A new attempt is a new job id: the old attempt's outcome cannot be taken for this one's.
            job.attempt += 1;
            job.sent_at = None;
            live.queues[wave].push_back(device.clone(), lane);
            self.set_phase(n, &device, JobPhase::Pending, now, fx);
        }
    }

    /// Sends a cancel to every commanded device still owing an outcome (once: a job being cancelled is sent its
    /// cancel again on the device's hello, not its update). Returns how many.
    fn cancel_in_flight(&mut self, n: RolloutId, now: Millis, fx: &mut Effects) -> usize {
        let Some(live) = self.rollouts.get_mut(&n) else { return 0 };
        let mut sent = 0;
        for job in live.jobs.values_mut().filter(|j| j.phase.in_flight() && !j.cancelling) {
            job.cancelling = true;
            job.updated_at = now;
            fx.put(Record::Job(job.clone()));
            fx.send(job.device.clone(), bindwave_proto::wire::Command::Cancel { job_id: job.id().to_string() });
            sent += 1;
        }
        sent
    }

    /// Pauses (or with `abort` aborts) every rollout under way: active ones, and with `abort` paused ones
    /// too. Returns the rollouts it stopped.
    pub(super) fn emergency_stop(
        &mut self,
        actor: &str,
        reason: &str,
        abort: bool,
        now: Millis,
        fx: &mut Effects,
    ) -> Vec<RolloutId> {
        let cause = Cause::EmergencyStop { actor: actor.to_string(), reason: reason.to_string() };
        let action = if abort { GateAction::Abort } else { GateAction::Pause };
        let targets: Vec<(RolloutId, usize, Stage)> = self
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
            stopped.push(n);
        }
        let what = if abort { "abort" } else { "pause" };
        self.record(now, actor, "emergency_stop", None, format!("{what} {} rollout(s): {reason}", stopped.len()), fx);
        stopped
    }
}
