//! Analysis gates in the engine: when a wave passes, each of its analyses is measured `count` times,
//! `interval` apart; the engine asks for each measurement as an effect ([`Measure`]) and takes its result as an
//! input ([`Measured`]), so it stays pure. A wave soaks until its soak time is over and every analysis has been
//! measured; too many failed measurements trip the gate, and one that could not be taken pauses the rollout.
//! Measurements are kept in memory: after a restart, or a resume, a soaking wave's analyses start again.

use super::{Effects, Engine, Measure, SYSTEM};
use crate::model::{Cause, GateAction, Millis, RolloutId, RolloutState, Stage};

/// One analysis measurement, as the service took it.
#[derive(Debug, Clone, PartialEq)]
pub enum Measured {
    /// The value of every series the query returned.
    Values(Vec<f64>),
    /// The query returned nothing, or not a number: nothing to judge by.
    NoData,
    /// Prometheus did not answer, or refused the query; the reason.
    Failed(String),
}

/// The analyses of one passed wave, being measured.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AnalysisRun {
    pub wave: usize,
    /// When measuring began (the wave's pass, or a resume).
    pub from: Millis,
    pub each: Vec<Measuring>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Measuring {
    pub taken: u32,
    pub failed: u32,
    /// Asked for and not answered yet.
    pub asked: bool,
    /// The last measurement's deciding value: the first series that failed, else the first series.
    pub last: Option<f64>,
}

/// Where an analysis gate of the wave being measured stands (see [`Engine::analysis_readings`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AnalysisReading {
    pub name: String,
    pub query: String,
    /// What every series must meet, e.g. `< 0.01`.
    pub condition: String,
    /// The wave measured (0-based).
    pub wave: usize,
    /// Measurements taken, of `count`.
    pub measured: u32,
    pub count: u32,
    /// Measurements that failed, and how many are tolerated.
    pub failed: u32,
    pub failure_limit: u32,
    /// The last measurement's deciding value: the first series that failed, else the first series.
    pub last_value: Option<f64>,
}

impl AnalysisRun {
    /// Whether every analysis has been measured as often as it asks.
    pub fn done(&self, counts: impl Iterator<Item = u32>) -> bool {
        self.each.iter().zip(counts).all(|(m, count)| m.taken >= count)
    }
}

impl Engine {
    /// Starts measuring a wave's analyses from `now` (nothing if it has none).
    pub(super) fn start_analysis(&mut self, n: RolloutId, wave: usize, now: Millis) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let analyses = &live.rollout.waves[wave].gates.analyses;
        live.analysis = (!analyses.is_empty()).then(|| AnalysisRun {
            wave,
            from: now,
            each: vec![Measuring::default(); analyses.len()],
        });
    }

    /// Whether a soaking wave's analyses have all been measured.
    pub(super) fn analysis_done(&self, n: RolloutId, wave: usize) -> bool {
        let Some(live) = self.rollouts.get(&n) else { return true };
        let counts = live.rollout.waves[wave].gates.analyses.iter().map(|a| a.count);
        live.analysis.as_ref().is_none_or(|run| run.wave != wave || run.done(counts))
    }

    /// When a measurement is next due, for the core's timer.
    pub(super) fn next_measurement(&self) -> Option<Millis> {
        self.rollouts
            .values()
            .filter(|l| matches!(l.rollout.state, RolloutState::Active { stage: Stage::Soaking { .. }, .. }))
            .filter_map(|l| {
                let run = l.analysis.as_ref()?;
                let analyses = &l.rollout.waves[run.wave].gates.analyses;
                run.each
                    .iter()
                    .zip(analyses)
                    .filter(|(m, a)| !m.asked && m.taken < a.count)
                    .map(|(m, a)| due(run.from, m.taken, a.interval_secs))
                    .min()
            })
            .min()
    }

    /// Asks for every measurement due at `now`.
    pub(super) fn ask_measurements(&mut self, now: Millis, fx: &mut Effects) {
        for (n, live) in &mut self.rollouts {
            if !matches!(live.rollout.state, RolloutState::Active { stage: Stage::Soaking { .. }, .. }) {
                continue;
            }
            let Some(run) = live.analysis.as_mut() else { continue };
            let analyses = &live.rollout.waves[run.wave].gates.analyses;
            for (i, (m, a)) in run.each.iter_mut().zip(analyses).enumerate() {
                if !m.asked && m.taken < a.count && due(run.from, m.taken, a.interval_secs) <= now {
                    m.asked = true;
                    fx.measure.push(Measure { rollout: *n, wave: run.wave, analysis: i, query: a.query.clone() });
                }
            }
        }
    }

    /// A measurement's result: counted, judged, and the gate tripped if it says so. A result for a wave that is
    /// no longer soaking (paused, aborted, or a measurement from before a resume) is dropped.
    pub(super) fn on_measured(
        &mut self,
        n: RolloutId,
        wave: usize,
        index: usize,
        result: Measured,
        now: Millis,
        fx: &mut Effects,
    ) {
        let Some(live) = self.rollouts.get_mut(&n) else { return };
        let RolloutState::Active { wave: w, stage: stage @ Stage::Soaking { .. } } = live.rollout.state.clone() else {
            return;
        };
        let Some(run) = live.analysis.as_mut().filter(|r| r.wave == wave && w == wave) else { return };
        let (Some(m), Some(a)) = (run.each.get_mut(index), live.rollout.waves[wave].gates.analyses.get(index)) else {
            return;
        };
        if !m.asked {
            return;
        }
        m.asked = false;
        m.taken += 1;
        let a = a.clone();
        let failing = match &result {
            Measured::Values(values) if values.is_empty() => None,
            Measured::Values(values) => Some(values.iter().copied().find(|v| !a.success.holds(*v))),
            Measured::NoData | Measured::Failed(_) => None,
        };
        if let (Measured::Values(values), Some(f)) = (&result, failing) {
            m.last = f.or(values.first().copied());
        }
        match (failing, result) {
            (Some(None), _) => {}
            (Some(Some(value)), _) => {
                m.failed += 1;
                let (failures, limit) = (m.failed, a.failure_limit);
                let text = format!(
                    "analysis {:?} measured {value}, which is not {}: {failures} failed measurement(s), {limit} \
                     tolerated (query: {})",
                    a.name, a.success, a.query
                );
                self.record(now, SYSTEM, "analysis", Some(n), text, fx);
                if failures > limit {
                    let cause = Cause::AnalysisFailed {
                        wave,
                        analysis: a.name.clone(),
                        query: a.query.clone(),
                        value,
                        condition: a.success.to_string(),
                        failures,
                        limit,
                    };
                    self.stop(n, wave, stage, cause, a.on_failure, SYSTEM, now, fx);
                    return;
                }
            }
            (None, result) => {
                let detail = match result {
                    Measured::Failed(why) => format!("Prometheus did not answer: {why}"),
                    _ => "the query returned no data".to_string(),
                };
                let cause =
                    Cause::AnalysisInconclusive { wave, analysis: a.name.clone(), query: a.query.clone(), detail };
                self.stop(n, wave, stage, cause, GateAction::Pause, SYSTEM, now, fx);
                return;
            }
        }
        self.advance(n, now, fx);
    }
}

impl Engine {
    /// The analysis gates of a rollout's wave being measured (passed, soaking, or stopped by one): each with
    /// its measurements so far, beside what it tolerates. Empty when no wave is being measured.
    pub fn analysis_readings(&self, id: &RolloutId) -> Vec<AnalysisReading> {
        let Some(live) = self.rollouts.get(id) else { return Vec::new() };
        let Some(run) = live.analysis.as_ref() else { return Vec::new() };
        let analyses = &live.rollout.waves[run.wave].gates.analyses;
        run.each
            .iter()
            .zip(analyses)
            .map(|(m, a)| AnalysisReading {
                name: a.name.clone(),
                query: a.query.clone(),
                condition: a.success.to_string(),
                wave: run.wave,
                measured: m.taken,
                count: a.count,
                failed: m.failed,
                failure_limit: a.failure_limit,
                last_value: m.last,
            })
            .collect()
    }
}

/// When measurement `taken + 1` is due.
fn due(from: Millis, taken: u32, interval_secs: u64) -> Millis {
    from.saturating_add(u64::from(taken + 1).saturating_mul(interval_secs.saturating_mul(1000)))
}
