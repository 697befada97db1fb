//! The gates: what moves a rollout on its own. One count of what the gates see (`Seen`) stands behind every
//! gate decision and behind [`Engine::gate_readings`], so what the metrics show is what the gates decided on.

use bindwave_proto::wire::DeviceId;

use super::{Effects, Engine, Live, Record, SYSTEM};
use crate::model::{Cause, GateAction, Gates, JobPhase, Millis, Outcome, RolloutId, RolloutState, Stage, Tally};
use crate::schedule::{Openness, Pace};

/// The gates that count devices.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, strum::IntoStaticStr, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Gate {
    /// Devices of the wave that succeeded, of those that could (rejected and cancelled devices aside): it must
    /// reach its threshold when the wave ends.
    Success,
    /// Failed and timed-out devices, of those finished: past its threshold the rollout stops.
    Failure,
    /// Devices that rejected the image, of those that answered: past its threshold the rollout stops.
    Rejection,
}

impl Gate {
    /// The gate's name, as in the JSON and the metrics' labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A gate's observed ratio beside its threshold (see [`Engine::gate_readings`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GateReading {
    pub gate: Gate,
    /// What the gate counts, as a ratio (0 when it has counted nothing yet).
    pub observed: f64,
    /// Where it trips.
    pub threshold: f64,
}

/// What the gates see of a rollout at a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// In this wave: devices that succeeded...
    succeeded: usize,
    /// ...of those the success ratio counts (rejected and cancelled devices aside).
    eligible: usize,
    /// Across every wave up to this one, since the last resume: failed or timed-out devices...
    failed: usize,
    /// ...of those finished (succeeded, failed or timed out)...
    finished: usize,
    /// ...and devices that rejected the image.
    rejected: usize,
}

impl Seen {
    /// Counts what the gates of `wave` see.
    fn at(live: &Live, wave: usize) -> Seen {
        let this = live.tallies[wave];
        let mut t = Tally::default();
        for w in &live.tallies[..=wave] {
            t.merge(w);
        }
        let base = &live.rollout.baseline;
        Seen {
            succeeded: this.get(Outcome::Succeeded),
            eligible: this.total() - this.rejected() - this.get(Outcome::Cancelled),
            failed: t.failed().saturating_sub(base.failed),
            finished: t.finished().saturating_sub(base.finished),
            rejected: t.rejected().saturating_sub(base.rejected),
        }
    }

    /// A threshold that has tripped (failures first), and what it does.
    fn tripped(&self, gates: &Gates) -> Option<(Cause, GateAction)> {
        let Seen { failed, finished, rejected, .. } = *self;
        if finished >= gates.failure_min_finished.max(1) && failed as f64 > gates.failure_ratio * finished as f64 + 1e-9
        {
            return Some((
                Cause::FailureThreshold { failed, finished, threshold: gates.failure_ratio },
                gates.on_failure,
            ));
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

    /// Whether a wave whose devices all have an outcome falls short of its success ratio.
    fn short_of_success(&self, gates: &Gates, wave: usize) -> Option<Cause> {
        let Seen { succeeded, eligible, .. } = *self;
        (eligible > 0 && (succeeded as f64) < gates.success_ratio * eligible as f64 - 1e-9)
            .then_some(Cause::SuccessGate { wave, succeeded, eligible, required: gates.success_ratio })
    }

    /// The gates' readings: each count as a ratio beside its threshold.
    fn readings(&self, gates: &Gates) -> Vec<GateReading> {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut readings = vec![
            GateReading {
                gate: Gate::Success,
                observed: ratio(self.succeeded, self.eligible),
                threshold: gates.success_ratio,
            },
            GateReading {
                gate: Gate::Failure,
                observed: ratio(self.failed, self.finished),
                threshold: gates.failure_ratio,
            },
        ];
        if let Some(threshold) = gates.rejection_ratio {
            readings.push(GateReading {
                gate: Gate::Rejection,
                observed: ratio(self.rejected, self.finished + self.rejected),
                threshold,
            });
        }
        readings
    }
}

impl Engine {
    /// Where a rollout stands against its gates, in the wave in progress (or the last one): what each gate
    /// watches, as a ratio, beside its threshold. Counts as the gates count them (thresholds since the last
    /// resume, across the waves so far).
    pub fn gate_readings(&self, id: &RolloutId) -> Vec<GateReading> {
        let Some(live) = self.rollouts.get(id) else { return Vec::new() };
        let Some(last) = live.rollout.waves.len().checked_sub(1) else { return Vec::new() };
        let wave = live.rollout.state.wave().unwrap_or(match live.rollout.state {
            RolloutState::Created => 0,
            _ => last,
        });
        Seen::at(live, wave).readings(&live.rollout.waves[wave].gates)
    }

    /// Time passed: in-flight jobs past their deadline time out, soaks end.
    pub(super) fn tick(&mut self, now: Millis, fx: &mut Effects) {
        let due: Vec<(Millis, RolloutId, DeviceId)> =
            self.deadlines.iter().take_while(|(d, ..)| *d <= now).cloned().collect();
        for (deadline, n, device) in due {
            self.deadlines.remove(&(deadline, n, device.clone()));
            let in_flight =
                self.rollouts.get(&n).and_then(|l| l.jobs.get(&device)).is_some_and(|j| j.phase.in_flight());
            if in_flight {
                self.set_phase(n, &device, JobPhase::TimedOut, now, fx);
            }
        }
        let active: Vec<RolloutId> = self
            .rollouts
            .iter()
            .filter(|(_, l)| matches!(l.rollout.state, RolloutState::Active { .. }))
            .map(|(n, _)| *n)
            .collect();
        for n in active {
            self.advance(n, now, fx);
        }
    }

    /// Moves a rollout as far as its gates allow: trips thresholds, sends commands, ends waves, starts the next.
    pub(super) fn advance(&mut self, n: RolloutId, now: Millis, fx: &mut Effects) {
        // Each turn moves at most one wave forward, so this ends.
        for _ in 0..=self.rollouts.get(&n).map_or(0, |l| l.rollout.waves.len()) {
            let Some(live) = self.rollouts.get(&n) else { return };
            let RolloutState::Active { wave, stage } = live.rollout.state.clone() else { return };
            if let Some((cause, action)) = Seen::at(live, wave).tripped(&live.rollout.waves[wave].gates) {
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
                    if let Some(cause) = Seen::at(live, wave).short_of_success(&live.rollout.waves[wave].gates, wave) {
                        self.stop(n, wave, Stage::Updating, cause, GateAction::Pause, SYSTEM, now, fx);
                        return;
                    }
                    self.pass_wave(n, wave, now, fx);
                }
                Stage::Soaking { until } => {
                    if now < until || !self.analysis_done(n, wave) {
                        return;
                    }
                    self.next_wave(n, wave, now, fx);
                }
            }
        }
    }

    /// A wave passed (or an operator let it through): it soaks.
    pub(super) fn pass_wave(&mut self, n: RolloutId, wave: usize, now: Millis, fx: &mut Effects) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let soak = live.rollout.waves[wave].gates.soak_secs.saturating_mul(1000);
        live.rollout.waves[wave].passed_at = Some(now);
        live.rollout.state = RolloutState::Active { wave, stage: Stage::Soaking { until: now.saturating_add(soak) } };
        fx.put(Record::Rollout(Box::new(live.rollout.clone())));
        self.start_analysis(n, wave, now);
        self.record(now, SYSTEM, "pass", Some(n), format!("wave {} passed its gates", wave + 1), fx);
    }

    /// A wave's soak is over: the next wave starts (or waits for approval), or after the last the rollout is
    /// finished.
    fn next_wave(&mut self, n: RolloutId, wave: usize, now: Millis, fx: &mut Effects) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        if wave + 1 >= live.rollout.waves.len() {
            live.rollout.state = RolloutState::Finished;
            live.rollout.ended_at = Some(now);
            fx.put(Record::Rollout(Box::new(live.rollout.clone())));
            let outcomes = live.total().to_map().into_iter().filter(|(_, count)| *count > 0);
            let outcomes: Vec<String> = outcomes.map(|(o, count)| format!("{}={count}", o.as_str())).collect();
            let why = format!("every wave passed its gates; outcomes: {}", outcomes.join(" "));
            self.record(now, SYSTEM, "finish", Some(n), why, fx);
            return;
        }
        let next = wave + 1;
        // Each wave is paced from its own first command.
        live.pace = Pace::default();
        live.wake_at = None;
        let approval = live.rollout.waves[next].gates.approval;
        if !approval {
            live.rollout.waves[next].started_at = Some(now);
        }
        live.rollout.state = RolloutState::Active {
            wave: next,
            stage: if approval { Stage::AwaitingApproval } else { Stage::Updating },
        };
        fx.put(Record::Rollout(Box::new(live.rollout.clone())));
        let why = if approval { "waits for approval" } else { "started" };
        self.record(now, SYSTEM, "wave", Some(n), format!("wave {} {why}", next + 1), fx);
    }

    /// Sends commands to waiting devices of the started waves, up to the current wave's concurrency limit, at
    /// its rate, to each device only while its window is open; notes when something held back may go.
    /// Downloaded devices waiting for their install window hold no place in the concurrency limit: it bounds
    /// the downloads, and the waves bound how many install.
    fn dispatch(&mut self, n: RolloutId, wave: usize, now: Millis, fx: &mut Effects) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let limit = live.rollout.waves[wave].gates.max_concurrent.unwrap_or(usize::MAX);
        let (rate, ramp) = (live.rollout.waves[wave].schedule.rate, live.rollout.waves[wave].schedule.ramp);
        let mut in_flight: usize = live.tallies[..=wave].iter().map(|t| t.get(Outcome::InProgress)).sum();
        let mut picked = Vec::new();
        let mut wake: Option<Millis> = None;
        let unsent_pending = live.unsent_phase() == JobPhase::Pending;
        let mut soonest = |at: Millis| wake = Some(wake.map_or(at, |w: Millis| w.min(at)));
        'waves: for w in 0..=wave {
            let windows = live.rollout.waves[w].schedule.windows.clone();
            for lane in live.queues[w].lanes_mut() {
                if in_flight >= limit {
                    break 'waves;
                }
                if lane.devices.is_empty() {
                    continue;
                }
                if !windows.is_empty() {
                    match lane.openness(&windows, now) {
                        Openness::Open { .. } => {}
                        Openness::Closed { until } => {
                            // No window within a week: look again in a day.
                            soonest(until.unwrap_or(now.saturating_add(24 * 3600 * 1000)));
                            continue;
                        }
                    }
                }
                while in_flight < limit {
                    if !live.pace.ready(now) {
                        soonest(live.pace.next_at());
                        break 'waves;
                    }
                    let Some(device) = lane.devices.pop_front() else { break };
                    let pending = match live.jobs.get(&device) {
                        Some(job) => job.phase == JobPhase::Pending,
                        None => unsent_pending && live.unsent.contains_key(&device),
                    };
                    if pending {
                        live.pace.sent(now, rate, ramp);
                        picked.push(device);
                        in_flight += 1;
                    }
                }
            }
        }
        live.wake_at = wake;
        for device in picked {
            self.set_phase(n, &device, JobPhase::Sent, now, fx);
            if let Some((device, command)) = self.command_for(n, &device, now) {
                fx.send(device, command);
            }
        }
    }

    /// Pauses or aborts a rollout, and records why.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stop(
        &mut self,
        n: RolloutId,
        wave: usize,
        stage: Stage,
        cause: Cause,
        action: GateAction,
        actor: &str,
        now: Millis,
        fx: &mut Effects,
    ) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let text = match &cause {
            Cause::Operator { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        match action {
            GateAction::Pause => {
                live.rollout.state = RolloutState::Paused { wave, stage, cause };
                fx.put(Record::Rollout(Box::new(live.rollout.clone())));
                self.record(now, actor, "pause", Some(n), text, fx);
            }
            GateAction::Abort => {
                live.rollout.state = RolloutState::Aborted { cause };
                live.rollout.ended_at = Some(now);
                fx.put(Record::Rollout(Box::new(live.rollout.clone())));
                self.cancel_pending(n, now, fx);
                self.record(now, actor, "abort", Some(n), text, fx);
            }
        }
    }

    /// Devices not yet commanded are cancelled: those never commanded by the rollout's abort itself (counted,
    /// not written: their jobs are implied), those waiting for a retry by a record each.
    fn cancel_pending(&mut self, n: RolloutId, now: Millis, fx: &mut Effects) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        for q in &mut live.queues {
            q.clear();
        }
        for place in live.unsent.values() {
            live.tallies[place.wave as usize].remove(Outcome::Pending);
            live.tallies[place.wave as usize].add(Outcome::Cancelled);
        }
        let pending: Vec<DeviceId> =
            live.jobs.values().filter(|j| j.phase == JobPhase::Pending).map(|j| j.device.clone()).collect();
        for d in pending {
            self.set_phase(n, &d, JobPhase::Cancelled, now, fx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::{create, failed, fleet, op, rejected_hw, spec, succeeded};
    use crate::engine::{Action, Input};
    use crate::model::{Baseline, Rollout};

    fn live(tallies: &[&[(Outcome, usize)]], baseline: Baseline) -> Live {
        let mut rollout: Rollout = serde_json::from_value(serde_json::json!({
            "id": "r1", "image": "ab".repeat(32), "targets": {}, "waves": [], "seed": 0, "override": false,
            "state": "created", "created_by": "t", "created_at": 0, "started_at": null, "ended_at": null,
        }))
        .unwrap();
        rollout.baseline = baseline;
        let mut live = Live::new(rollout);
        live.tallies = tallies
            .iter()
            .map(|w| {
                let mut t = Tally::default();
                for (o, n) in *w {
                    for _ in 0..*n {
                        t.add(*o);
                    }
                }
                t
            })
            .collect();
        live
    }

    #[test]
    fn the_count_takes_this_wave_for_success_and_every_wave_since_the_resume_for_thresholds() {
        use Outcome::*;
        let l = live(
            &[
                &[(Succeeded, 5), (Failed, 3), (TimedOut, 1), (RejectedHardware, 2)],
                &[(Succeeded, 2), (Failed, 1), (RejectedSoftware, 1), (Cancelled, 4), (Pending, 2), (InProgress, 1)],
            ],
            Baseline { failed: 2, finished: 6, rejected: 1 },
        );
        assert_eq!(Seen::at(&l, 0), Seen { succeeded: 5, eligible: 9, failed: 2, finished: 3, rejected: 1 });
        assert_eq!(
            Seen::at(&l, 1),
            Seen { succeeded: 2, eligible: 6, failed: 3, finished: 6, rejected: 2 },
            "wave 2: pending and in-flight devices are eligible; thresholds count both waves less the baseline"
        );
    }

    #[test]
    fn readings_are_over_their_threshold_exactly_when_the_gate_trips() {
        let gates = Gates {
            failure_ratio: 0.25,
            failure_min_finished: 1,
            rejection_ratio: Some(0.5),
            rejection_min_finished: 1,
            success_ratio: 0.75,
            ..Gates::default()
        };
        for succeeded in 0..6 {
            for failed in 0..6 {
                for rejected in 0..6 {
                    let finished = succeeded + failed;
                    let seen = Seen { succeeded, eligible: finished, failed, finished, rejected };
                    let r = seen.readings(&gates);
                    let over =
                        |g: &str| r.iter().find(|r| r.gate.as_str() == g).is_some_and(|r| r.observed > r.threshold);
                    let what = format!("{seen:?}: {r:?}");
                    match seen.tripped(&gates) {
                        Some((Cause::FailureThreshold { .. }, _)) => assert!(over("failure"), "{what}"),
                        Some((Cause::RejectionThreshold { .. }, _)) => {
                            assert!(!over("failure") && over("rejection"), "{what}")
                        }
                        Some(other) => panic!("{other:?}"),
                        None => assert!(!over("failure") && !over("rejection"), "{what}"),
                    }
                    let under = r[0].observed < r[0].threshold && finished > 0;
                    assert_eq!(seen.short_of_success(&gates, 0).is_some(), under, "{what}");
                }
            }
        }
    }

    /// Through the engine: after every report the readings the metrics show agree with what the gates did.
    #[test]
    fn the_engine_stops_where_its_readings_cross() {
        let mut e = fleet(20);
        let gates = Gates { failure_ratio: 0.3, failure_min_finished: 1, ..Gates::default() };
        let r = create(&mut e, spec(&["100%"], gates));
        op(&mut e, &r, Action::Start, 1).unwrap();
        let jobs: Vec<_> = e.jobs_of(&r).map(|j| (j.device.clone(), j.id().to_string())).collect();
        for (i, (device, job)) in jobs.iter().enumerate() {
            let report = if i % 2 == 0 { succeeded(job) } else { failed(job) };
            e.handle(Input::Report(device.clone(), report), 2).unwrap();
            let failure = e.gate_readings(&r)[1];
            assert_eq!(failure.gate, Gate::Failure);
            let paused = matches!(
                e.rollout(&r).unwrap().state,
                RolloutState::Paused { cause: Cause::FailureThreshold { .. }, .. }
            );
            assert_eq!(paused, failure.observed > failure.threshold, "after {} reports: {failure:?}", i + 1);
            if paused {
                return;
            }
        }
        panic!("half the devices failed, above 30%: the threshold should have tripped");
    }

    #[test]
    fn rejections_show_in_their_reading_only_when_watched() {
        let mut e = fleet(4);
        let r = create(&mut e, spec(&["100%"], Gates::default()));
        op(&mut e, &r, Action::Start, 1).unwrap();
        let (device, job) = e.jobs_of(&r).map(|j| (j.device.clone(), j.id().to_string())).next().unwrap();
        e.handle(Input::Report(device, rejected_hw(&job)), 2).unwrap();
        let gates: Vec<&str> = e.gate_readings(&r).iter().map(|g| g.gate.as_str()).collect();
        assert_eq!(gates, ["success", "failure"]);
        assert!(e.gate_readings(&RolloutId::from(9)).is_empty());
    }
}
