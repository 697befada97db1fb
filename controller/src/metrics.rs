//! Prometheus metrics of the controller, served on `/metrics`.
//!
//! Label values are bounded: states, kinds and outcomes, never a device id.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::engine::Engine;

/// Rollout states, as `bindwave_rollouts{state}` labels them.
const STATES: [&str; 5] = ["created", "active", "paused", "aborted", "finished"];

pub struct Metrics {
    registry: Registry,
    pub mqtt_connected: IntGauge,
    pub messages_received: IntCounterVec,
    pub messages_malformed: IntCounterVec,
    pub commands_sent: IntCounter,
    pub store_flushes: IntCounter,
    pub store_records_written: IntCounter,
    pub store_size: IntGauge,
    devices: IntGaugeVec,
    rollouts: IntGaugeVec,
    rollout_jobs: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
            registry.register(Box::new(c.clone())).expect("metric registered once");
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
            registry.register(Box::new(g.clone())).expect("metric registered once");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric definition");
            registry.register(Box::new(c.clone())).expect("metric registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric definition");
            registry.register(Box::new(g.clone())).expect("metric registered once");
            g
        };
        let m = Metrics {
            mqtt_connected: gauge("bindwave_mqtt_connected", "1 while the controller is connected to the broker."),
            messages_received: counter_vec(
                "bindwave_mqtt_messages_received_total",
                "MQTT messages received from devices, by kind.",
                &["kind"],
            ),
            messages_malformed: counter_vec(
                "bindwave_mqtt_messages_malformed_total",
                "MQTT messages dropped because they could not be decoded, by kind.",
                &["kind"],
            ),
            commands_sent: counter("bindwave_commands_sent_total", "Commands (updates and acks) published to devices."),
            store_flushes: counter("bindwave_store_flushes_total", "Group commits: flushes of the store."),
            store_records_written: counter("bindwave_store_records_written_total", "Records written to the store."),
            store_size: gauge("bindwave_store_size_bytes", "Size of the store on disk."),
            devices: gauge_vec("bindwave_devices", "Known devices, by online state.", &["online"]),
            rollouts: gauge_vec("bindwave_rollouts", "Rollouts, by state.", &["state"]),
            rollout_jobs: gauge_vec(
                "bindwave_rollout_jobs",
                "Jobs of each rollout, by outcome.",
                &["rollout", "outcome"],
            ),
            registry,
        };
        // Known label values start at zero, so dashboards and alerts see the series before the first event.
        for kind in ["hello", "presence", "report"] {
            m.messages_received.with_label_values(&[kind]);
            m.messages_malformed.with_label_values(&[kind]);
        }
        m.messages_malformed.with_label_values(&["topic"]);
        for state in STATES {
            m.rollouts.with_label_values(&[state]);
        }
        for online in ["true", "false"] {
            m.devices.with_label_values(&[online]);
        }
        m
    }

    /// Refreshes the gauges that mirror the engine's state.
    pub fn observe(&self, engine: &Engine) {
        let (mut online, mut offline) = (0, 0);
        for d in engine.devices() {
            if d.online {
                online += 1
            } else {
                offline += 1
            }
        }
        self.devices.with_label_values(&["true"]).set(online);
        self.devices.with_label_values(&["false"]).set(offline);
        let mut by_state: std::collections::BTreeMap<&str, i64> = STATES.iter().map(|s| (*s, 0)).collect();
        for r in engine.rollouts() {
            *by_state.entry(r.state.name()).or_default() += 1;
            for (outcome, n) in engine.tally(&r.id).to_map() {
                self.rollout_jobs.with_label_values(&[r.id.as_str(), outcome.as_str()]).set(n as i64);
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

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
