//! Prometheus metrics of the controller, served on `/metrics`.
//!
//! Three kinds:
//! - **State, mirrored on every scrape** from the engine ([`Metrics::observe`]): the fleet, the rollouts, their
//!   waves, gates and outcomes. They are exact after a restart, because they are read off the state, not counted.
//! - **Events, counted as they happen**: job latencies and downloads (observed when a final report first
//!   arrives), MQTT traffic, store commits, API requests.
//! - **The process**: `process_*` (memory, CPU, open files) from the prometheus crate.
//!
//! Names follow Prometheus conventions (`bindwave_` prefix, units in names, `_total` counters). Label values
//! are bounded: states, reasons, routes, rollout ids and wave numbers, fleet attributes (model, hardware level,
//! software version); never a device id.

use std::collections::BTreeMap;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use bindwave_proto::wire::{CommandKind, TopicKind};

use crate::engine::{Engine, Refused};
use crate::model::{Cause, CauseKind, Job, JobPhase, Outcome, RolloutId, RolloutState, RolloutStateKind, Stage};
use strum::VariantArray;

/// Rollout states, as `bindwave_rollouts{state}` and `bindwave_rollout_state{state}` label them.
fn states() -> impl Iterator<Item = &'static str> {
    RolloutStateKind::VARIANTS.iter().map(|&k| k.into())
}

/// What a device sends, as `bindwave_mqtt_messages_received_total{kind}` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum MessageKind {
    Hello,
    Presence,
    Report,
}

impl MessageKind {
    /// The kind of message a device topic carries to the controller; `None` for the controller's own.
    pub fn of(topic: TopicKind) -> Option<MessageKind> {
        match topic {
            TopicKind::Hello => Some(MessageKind::Hello),
            TopicKind::Presence => Some(MessageKind::Presence),
            TopicKind::Reports => Some(MessageKind::Report),
            TopicKind::Commands => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where a wave is, as `bindwave_rollout_wave_stage{stage}` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
enum WaveStage {
    Pending,
    AwaitingApproval,
    Updating,
    Soaking,
    Passed,
    Paused,
    Aborted,
}

/// Why a rollout stopped, as `bindwave_rollout_stop_cause{cause}` labels it.
fn causes() -> impl Iterator<Item = &'static str> {
    CauseKind::VARIANTS.iter().map(|&k| k.into())
}

/// The outcomes a device reports (a timeout is the controller's, not a report).
const FINAL_OUTCOMES: [Outcome; 4] =
    [Outcome::Succeeded, Outcome::RejectedHardware, Outcome::RejectedSoftware, Outcome::Failed];
/// Seconds from a command to the device's final report: from a quick rejection to an hour-long download.
const JOB_BUCKETS: [f64; 16] =
    [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0];
const DOWNLOAD_BUCKETS: [f64; 12] = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
const HTTP_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
const FLUSH_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
const BATCH_BUCKETS: [f64; 9] = [1.0, 4.0, 16.0, 64.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

pub struct Metrics {
    registry: Registry,
    // The service.
    pub mqtt_connected: IntGauge,
    pub messages_received: IntCounterVec,
    pub messages_sent: IntCounterVec,
    pub publish_errors: IntCounter,
    pub messages_malformed: IntCounterVec,
    /// Input refused as hostile or untrue, by what it was ([`Refused`]).
    pub refused: IntCounterVec,
    /// Hellos that changed a known device's hardware level, by whether the change was applied.
    pub level_changes: IntCounterVec,
    pub store_flushes: IntCounter,
    pub store_flush_seconds: Histogram,
    pub store_records_written: IntCounter,
    pub store_size: IntGauge,
    /// How far the wall clock is ahead of the controller's steady time (negative: behind).
    pub clock_step: IntGauge,
    pub batch_inputs: Histogram,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub http_connections: IntGauge,
    // Events of jobs.
    job_seconds: HistogramVec,
    download_bytes: IntCounterVec,
    download_seconds: HistogramVec,
    download_attempts: IntCounterVec,
    // State, mirrored from the engine.
    devices: IntGaugeVec,
    rollouts: IntGaugeVec,
    rollout_info: IntGaugeVec,
    rollout_state: IntGaugeVec,
    rollout_stop_cause: IntGaugeVec,
    rollout_waves: IntGaugeVec,
    rollout_current_wave: IntGaugeVec,
    rollout_devices: IntGaugeVec,
    wave_stage: IntGaugeVec,
    wave_devices: IntGaugeVec,
    gate_threshold: prometheus::GaugeVec,
    gate_observed: prometheus::GaugeVec,
    rejections: IntGaugeVec,
    failures: IntGaugeVec,
}

struct Reg<'a>(&'a Registry);

impl Reg<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0.register(Box::new(c.clone())).expect("metric registered once");
        c
    }
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("static metric definition"))
    }
    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition"))
    }
    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("static metric definition"))
    }
    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"))
    }
    fn float_gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
        self.add(prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"))
    }
    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("static metric definition"))
    }
    fn histogram_vec(&self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("static metric definition"))
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
        }
        let r = Reg(&registry);
        let build = r.gauge_vec("bindwave_build_info", "The controller's version; always 1.", &["version"]);
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let m = Metrics {
            mqtt_connected: r.gauge("bindwave_mqtt_connected", "1 while the controller is connected to the broker."),
            messages_received: r.counter_vec(
                "bindwave_mqtt_messages_received_total",
                "MQTT messages received from devices, by kind.",
                &["kind"],
            ),
            messages_sent: r.counter_vec(
                "bindwave_mqtt_messages_sent_total",
                "MQTT messages published to devices, by kind (update, ack).",
                &["kind"],
            ),
            publish_errors: r.counter("bindwave_mqtt_publish_errors_total", "Commands the MQTT client refused to send."),
            messages_malformed: r.counter_vec(
                "bindwave_mqtt_messages_malformed_total",
                "MQTT messages dropped because they could not be decoded, by kind.",
                &["kind"],
            ),
            refused: r.counter_vec(
                "bindwave_refused_total",
                "Hostile or broken input refused and dropped (each kind logged at most once a minute), by what it was.",
                &["what"],
            ),
            level_changes: r.counter_vec(
                "bindwave_hardware_level_changes_total",
                "Hellos that changed a known device's hardware level; applied only when the hardware probe found it.",
                &["applied"],
            ),
            store_flushes: r.counter("bindwave_store_flushes_total", "Group commits: flushes of the store."),
            store_flush_seconds: r.histogram(
                "bindwave_store_flush_duration_seconds",
                "Time to write and flush one batch of records.",
                &FLUSH_BUCKETS,
            ),
            store_records_written: r.counter("bindwave_store_records_written_total", "Records written to the store."),
            store_size: r.gauge("bindwave_store_size_bytes", "Size of the store on disk."),
            clock_step: r.gauge(
                "bindwave_clock_step_seconds",
                "How far the wall clock is ahead of the controller's steady time (negative: behind); not zero after \
                 the wall clock jumped while the controller runs.",
            ),
            batch_inputs: r.histogram(
                "bindwave_core_batch_inputs",
                "Inputs (device messages, requests) handled per commit of the core.",
                &BATCH_BUCKETS,
            ),
            http_requests: r.counter_vec(
                "bindwave_http_requests_total",
                "HTTP API requests, by route, method and status code.",
                &["route", "method", "status"],
            ),
            http_connections: r.gauge("bindwave_http_connections", "Open HTTP connections."),
            http_seconds: r.histogram_vec(
                "bindwave_http_request_duration_seconds",
                "HTTP API request latency, by route.",
                &["route"],
                &HTTP_BUCKETS,
            ),
            job_seconds: r.histogram_vec(
                "bindwave_job_duration_seconds",
                "Seconds from a device's command to its final report, by rollout and outcome.",
                &["rollout", "outcome"],
                &JOB_BUCKETS,
            ),
            download_bytes: r.counter_vec(
                "bindwave_download_bytes_total",
                "Bytes devices downloaded, as they report them, by rollout.",
                &["rollout"],
            ),
            download_seconds: r.histogram_vec(
                "bindwave_download_duration_seconds",
                "Download time as devices report it (first request to verified file), by rollout.",
                &["rollout"],
                &DOWNLOAD_BUCKETS,
            ),
            download_attempts: r.counter_vec(
                "bindwave_download_attempts_total",
                "Download requests devices made (retries and resumes included), by rollout.",
                &["rollout"],
            ),
            devices: r.gauge_vec(
                "bindwave_devices",
                "Known devices, by online state, model, hardware level and running software version.",
                &["online", "model", "hardware_level", "software_version"],
            ),
            rollouts: r.gauge_vec("bindwave_rollouts", "Rollouts, by state.", &["state"]),
            rollout_info: r.gauge_vec(
                "bindwave_rollout_info",
                "One series per rollout (always 1), naming its image and the image's software version.",
                &["rollout", "image", "software_version"],
            ),
            rollout_state: r.gauge_vec(
                "bindwave_rollout_state",
                "1 for the state a rollout is in, 0 for the others.",
                &["rollout", "state"],
            ),
            rollout_stop_cause: r.gauge_vec(
                "bindwave_rollout_stop_cause",
                "1 for why a paused or aborted rollout stopped, 0 for the other causes.",
                &["rollout", "cause"],
            ),
            rollout_waves: r.gauge_vec("bindwave_rollout_waves", "Waves in a rollout.", &["rollout"]),
            rollout_current_wave: r.gauge_vec(
                "bindwave_rollout_current_wave",
                "The wave in progress (1-based); 0 before the start; the last wave once over.",
                &["rollout"],
            ),
            rollout_devices: r.gauge_vec(
                "bindwave_rollout_devices",
                "Devices of a rollout, by wave (1-based) and job state.",
                &["rollout", "wave", "state"],
            ),
            wave_stage: r.gauge_vec(
                "bindwave_rollout_wave_stage",
                "1 for the stage a wave is in, 0 for the others.",
                &["rollout", "wave", "stage"],
            ),
            wave_devices: r.gauge_vec(
                "bindwave_rollout_wave_size",
                "Devices planned into each wave (not cumulative).",
                &["rollout", "wave"],
            ),
            gate_threshold: r.float_gauge_vec(
                "bindwave_rollout_gate_threshold_ratio",
                "A gate's threshold: the success ratio a wave needs, or the failure or rejection ratio that stops it.",
                &["rollout", "gate"],
            ),
            gate_observed: r.float_gauge_vec(
                "bindwave_rollout_gate_observed_ratio",
                "What a gate sees now: the current wave's success ratio, or the failure or rejection ratio since the last resume.",
                &["rollout", "gate"],
            ),
            rejections: r.gauge_vec(
                "bindwave_rollout_rejections",
                "Devices that rejected a rollout's image, by reason code.",
                &["rollout", "reason"],
            ),
            failures: r.gauge_vec(
                "bindwave_rollout_failures",
                "Devices whose job failed, by reason code (timed_out included).",
                &["rollout", "reason"],
            ),
            registry,
        };
        // Known label values start at zero, so dashboards and alerts see the series before the first event.
        for kind in MessageKind::VARIANTS.iter().map(|&k| <&'static str>::from(k)) {
            m.messages_received.with_label_values(&[kind]);
            m.messages_malformed.with_label_values(&[kind]);
        }
        for kind in CommandKind::VARIANTS.iter().map(|&k| <&'static str>::from(k)) {
            m.messages_sent.with_label_values(&[kind]);
        }
        m.messages_malformed.with_label_values(&["topic"]);
        for what in Refused::VARIANTS {
            m.refused.with_label_values(&[what.as_str()]);
        }
        for applied in ["true", "false"] {
            m.level_changes.with_label_values(&[applied]);
        }
        for state in states() {
            m.rollouts.with_label_values(&[state]);
        }
        m
    }

    /// Starts a rollout's event series at zero (when it is created, and on every scrape after a restart), so
    /// rate() and increase() count its first outcomes too.
    pub fn rollout_known(&self, id: &RolloutId) {
        let id = id.to_string();
        let id = id.as_str();
        for outcome in FINAL_OUTCOMES {
            self.job_seconds.with_label_values(&[id, outcome.as_str()]);
        }
        self.download_bytes.with_label_values(&[id]);
        self.download_attempts.with_label_values(&[id]);
        self.download_seconds.with_label_values(&[id]);
    }

    /// A device's final report arrived (first time) for `job`: its latency and what its download took.
    pub fn job_finished(&self, job: &Job, download: Option<&bindwave_proto::wire::DownloadStats>) {
        if let Some(sent) = job.sent_at {
            let secs = job.updated_at.saturating_sub(sent) as f64 / 1000.0;
            let rollout = job.rollout.to_string();
            self.job_seconds.with_label_values(&[rollout.as_str(), job.phase.outcome().as_str()]).observe(secs);
        }
        if let Some(d) = download {
            let rollout = job.rollout.to_string();
            let rollout = rollout.as_str();
            self.download_bytes.with_label_values(&[rollout]).inc_by(d.bytes);
            self.download_attempts.with_label_values(&[rollout]).inc_by(u64::from(d.attempts));
            self.download_seconds.with_label_values(&[rollout]).observe(d.millis as f64 / 1000.0);
        }
    }

    /// Refreshes the gauges that mirror the engine's state.
    pub fn observe(&self, engine: &Engine) {
        let mut fleet: BTreeMap<[String; 4], i64> = BTreeMap::new();
        for d in engine.devices() {
            let (model, level, version) = match &d.hello {
                Some(h) => (
                    h.model.as_deref().unwrap_or("unknown").to_string(),
                    h.hardware_level.0.to_string(),
                    h.software_version.to_string(),
                ),
                None => ("unknown".into(), "unknown".into(), "unknown".into()),
            };
            *fleet.entry([d.online.to_string(), model, level, version]).or_default() += 1;
        }
        // Combinations nobody has any more disappear rather than linger at their last value.
        self.devices.reset();
        for (labels, n) in &fleet {
            let l: Vec<&str> = labels.iter().map(String::as_str).collect();
            self.devices.with_label_values(&l).set(*n);
        }

        for g in [
            &self.rollout_info,
            &self.rollout_state,
            &self.rollout_stop_cause,
            &self.rollout_waves,
            &self.rollout_current_wave,
            &self.rollout_devices,
            &self.wave_stage,
            &self.wave_devices,
            &self.rejections,
            &self.failures,
        ] {
            g.reset();
        }
        self.gate_threshold.reset();
        self.gate_observed.reset();
        let mut by_state: BTreeMap<&str, i64> = states().map(|s| (s, 0)).collect();
        for r in engine.rollouts() {
            let name = r.id.to_string();
            let id = name.as_str();
            *by_state.entry(r.state.name()).or_default() += 1;
            self.rollout_known(&r.id);
            let version = engine.image(&r.image).map(|i| i.software_version.to_string()).unwrap_or_default();
            let short = r.image.short();
            self.rollout_info.with_label_values(&[id, short, &version]).set(1);
            for state in states() {
                self.rollout_state.with_label_values(&[id, state]).set(i64::from(state == r.state.name()));
            }
            let cause = match &r.state {
                RolloutState::Paused { cause, .. } | RolloutState::Aborted { cause } => Some(cause_name(cause)),
                _ => None,
            };
            for c in causes() {
                self.rollout_stop_cause.with_label_values(&[id, c]).set(i64::from(Some(c) == cause));
            }
            let waves = r.waves.len();
            self.rollout_waves.with_label_values(&[id]).set(waves as i64);
            let current = match &r.state {
                RolloutState::Created => 0,
                RolloutState::Active { wave, .. } | RolloutState::Paused { wave, .. } => wave + 1,
                RolloutState::Aborted { .. } | RolloutState::Finished => {
                    r.waves.iter().rposition(|w| w.started_at.is_some()).map_or(0, |w| w + 1)
                }
            };
            self.rollout_current_wave.with_label_values(&[id]).set(current as i64);
            for (w, tally) in engine.wave_tallies(&r.id).iter().enumerate() {
                let wave = (w + 1).to_string();
                for &outcome in Outcome::ALL {
                    self.rollout_devices
                        .with_label_values(&[id, &wave, outcome.as_str()])
                        .set(tally.get(outcome) as i64);
                }
                self.wave_devices.with_label_values(&[id, &wave]).set(tally.total() as i64);
                let stage = wave_stage(&r.state, w, r.waves[w].passed_at.is_some(), r.waves[w].started_at.is_some());
                for s in WaveStage::VARIANTS.iter().map(|&s| <&'static str>::from(s)) {
                    self.wave_stage.with_label_values(&[id, &wave, s]).set(i64::from(s == stage));
                }
            }
            for reading in engine.gate_readings(&r.id) {
                self.gate_threshold.with_label_values(&[id, reading.gate.as_str()]).set(reading.threshold);
                self.gate_observed.with_label_values(&[id, reading.gate.as_str()]).set(reading.observed);
            }
            let (mut rejected, mut failed): (BTreeMap<&str, i64>, BTreeMap<&str, i64>) = Default::default();
            for job in engine.jobs_of(&r.id) {
                match (&job.phase, job.phase.outcome()) {
                    (JobPhase::Rejected { reason, .. }, Outcome::RejectedHardware | Outcome::RejectedSoftware) => {
                        *rejected.entry(reason.code()).or_default() += 1
                    }
                    (JobPhase::Rejected { reason, .. } | JobPhase::Failed { reason, .. }, _) => {
                        *failed.entry(reason.code()).or_default() += 1
                    }
                    (JobPhase::TimedOut, _) => *failed.entry("timed_out").or_default() += 1,
                    _ => {}
                }
            }
            for (reason, n) in rejected {
                self.rejections.with_label_values(&[id, reason]).set(n);
            }
            for (reason, n) in failed {
                self.failures.with_label_values(&[id, reason]).set(n);
            }
        }
        for (state, n) in by_state {
            self.rollouts.with_label_values(&[state]).set(n);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn cause_name(cause: &Cause) -> &'static str {
    cause.into()
}

/// Where wave `w` is, given the rollout's state.
fn wave_stage(state: &RolloutState, w: usize, passed: bool, started: bool) -> &'static str {
    let stage = match state {
        RolloutState::Active { wave, stage } if *wave == w => match stage {
            Stage::AwaitingApproval => WaveStage::AwaitingApproval,
            Stage::Updating => WaveStage::Updating,
            Stage::Soaking { .. } => WaveStage::Soaking,
        },
        RolloutState::Paused { wave, .. } if *wave == w => WaveStage::Paused,
        RolloutState::Aborted { .. } if started && !passed => WaveStage::Aborted,
        _ if passed => WaveStage::Passed,
        _ => WaveStage::Pending,
    };
    stage.into()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn wave_stages_follow_the_rollout() {
        let active = RolloutState::Active { wave: 1, stage: Stage::Updating };
        assert_eq!(wave_stage(&active, 0, true, true), "passed");
        assert_eq!(wave_stage(&active, 1, false, true), "updating");
        assert_eq!(wave_stage(&active, 2, false, false), "pending");
        let soaking = RolloutState::Active { wave: 0, stage: Stage::Soaking { until: 5 } };
        assert_eq!(wave_stage(&soaking, 0, true, true), "soaking");
        let aborted = RolloutState::Aborted { cause: Cause::Operator { actor: "a".into(), reason: "r".into() } };
        assert_eq!(wave_stage(&aborted, 0, true, true), "passed");
        assert_eq!(wave_stage(&aborted, 1, false, true), "aborted");
        assert_eq!(wave_stage(&aborted, 2, false, false), "pending");
    }

    #[test]
    fn the_exposition_has_no_device_ids_and_keeps_to_conventions() {
        let m = Metrics::new();
        let text = m.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE bindwave_")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(name.ends_with("_total"), kind == "counter", "{line}");
        }
        assert!(!text.contains("device=\""), "{text}");
    }

    /// `bindwave_refused_total` has one series per kind of refusal, from zero, named as the enum's variants.
    #[test]
    fn refusals_are_labelled_by_every_kind_and_only_those() {
        let m = Metrics::new();
        let text = m.render();
        let labels: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("bindwave_refused_total{what=\""))
            .filter_map(|l| l.split_once('"').map(|(what, _)| what))
            .collect();
        let kinds: BTreeSet<&str> = Refused::VARIANTS.iter().map(|k| k.as_str()).collect();
        assert_eq!(labels, kinds);
        assert!(kinds.contains("job_not_sent") && kinds.contains("oversized"), "{kinds:?}");
        m.refused.with_label_values(&[Refused::UnknownJob.as_str()]).inc();
        assert!(m.render().contains("bindwave_refused_total{what=\"unknown_job\"} 1"));
    }
}
