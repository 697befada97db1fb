//! What every chaos run must end with, read from the controller (API, metrics, audit log) and from each phone's
//! own files (its `active` record, its slots, its journal):
//! - every phone has exactly one final outcome, and it matches the version the phone runs;
//! - no phone runs a half-written image: the slot it runs holds the image's exact bytes;
//! - no phone installed a job twice: a phone that succeeded switched slots once (it runs slot b, having
//!   started on slot a), and a phone that did not never switched;
//! - the API's counts, its jobs, the metrics and the audit log's finish entry agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Controller;

/// What the rollout rolled out.
pub struct Expected<'a> {
    pub version: &'a str,
    /// The SHA-256 of the image's payload, as a slot holds it.
    pub payload_sha256: &'a str,
    pub phones: usize,
}

/// The checked outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Final outcomes by name (`succeeded`, `rejected_software`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Phones whose last job was an operator's retry.
    pub retried: u64,
}

impl Checked {
    /// `succeeded=612 rejected_software=388`.
    pub fn outcomes_line(&self) -> String {
        self.outcomes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

fn sha256_file(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| hex::encode(Sha256::digest(b)))
}

fn json_file(path: &Path) -> Value {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null)
}

/// The final outcome's name of a job, as the API's counts name it.
fn outcome(job: &Value) -> String {
    let phase = job["phase"]["phase"].as_str().unwrap_or("?");
    match phase {
        "rejected" => match job["phase"]["reason"]["code"].as_str() {
            Some("hardware_level_incompatible") => "rejected_hardware".into(),
            Some("software_level_below_minimum") => "rejected_software".into(),
            _ => "failed".into(),
        },
        "sent" | "running" => "in_progress".into(),
        other => other.into(),
    }
}

/// Runs every check of a finished rollout `rollout`; `state_of` gives a phone's state directory. Panics with
/// what did not hold.
pub fn check_run(c: &Controller, rollout: &str, expected: &Expected, state_of: &dyn Fn(&str) -> PathBuf) -> Checked {
    let s = c.json(&["rollout", "status", rollout, "-o", "json"]);
    assert_eq!(s["rollout"]["state"], "finished", "the rollout is not finished: {:#}", s["rollout"]);
    let jobs = s["jobs"].as_array().expect("the rollout's jobs");
    assert_eq!(jobs.len(), expected.phones, "one job per phone");
    let mut checked = Checked::default();
    let mut seen = std::collections::BTreeSet::new();
    for job in jobs {
        let device = job["device"].as_str().expect("a job's device");
        assert!(seen.insert(device.to_string()), "{device} has two jobs in the rollout");
        let outcome = outcome(job);
        *checked.outcomes.entry(outcome.clone()).or_default() += 1;
        if job["attempt"].as_u64().unwrap_or(1) > 1 {
            checked.retried += 1;
        }
        let state = state_of(device);
        let active = json_file(&state.join("active"));
        match outcome.as_str() {
            "succeeded" => {
                assert_eq!(active["version"], expected.version, "{device} succeeded but runs {active}");
                assert_eq!(job["phase"]["running_version"], expected.version, "{device}: {job:#}");
                // A phone that starts on slot a and installed once runs slot b.
                assert_eq!(active["slot"], "b", "{device} switched slots more than once: {active}");
            }
            "rejected_hardware" | "rejected_software" | "failed" | "timed_out" | "cancelled" => {
                // Every phone starts on its factory slot, without an `active` record: one that did not succeed never
                // switched.
                assert!(active.is_null(), "{device} ended {outcome} but switched slots: {active}");
            }
            other => panic!("{device} has no final outcome ({other}): {job:#}"),
        }
        if let Some(slot) = active["slot"].as_str() {
            let payload = state.join("slots").join(slot).join("payload");
            let sha = sha256_file(&payload);
            if active["version"] == expected.version {
                assert_eq!(sha.as_deref(), Some(expected.payload_sha256), "{device} runs a half-written image");
            }
        }
    }

    // The API's counts are its jobs'.
    let counts = &s["counts"];
    for (name, n) in &checked.outcomes {
        assert_eq!(
            counts[name].as_u64(),
            Some(*n),
            "the API counts {name} {} times, its jobs {n}: {counts:#}",
            counts[name]
        );
    }
    let total: u64 = counts.as_object().expect("counts").values().filter_map(Value::as_u64).sum();
    assert_eq!(total, expected.phones as u64, "the API's counts add up to {total}: {counts:#}");

    // The metrics say the same, summed over the waves.
    let (status, metrics) = c.get("/metrics");
    assert_eq!(status, 200, "metrics: {metrics}");
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let prefix = format!("bindwave_rollout_devices{{rollout=\"{rollout}\",");
    for line in metrics.lines().filter(|l| l.starts_with(&prefix)) {
        let state = line.split("state=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *by_state.entry(state.to_string()).or_default() += value as u64;
    }
    for (name, n) in &checked.outcomes {
        assert_eq!(by_state.get(name), Some(n), "the metrics count {name} as {:?}, the API {n}", by_state.get(name));
    }

    // The audit log's finish entry names the same outcomes.
    let audit = c.json(&["audit", "--rollout", rollout, "-o", "json"]);
    let finish = audit
        .as_array()
        .and_then(|a| a.iter().rev().find(|e| e["action"] == "finish"))
        .unwrap_or_else(|| panic!("no finish in the audit log: {audit:#}"));
    let told: BTreeMap<String, u64> = finish["reason"]
        .as_str()
        .and_then(|r| r.split("outcomes: ").nth(1))
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect();
    assert_eq!(told, checked.outcomes, "the audit log's outcomes ({}) differ from the API's", finish["reason"]);
    checked
}

/// The SHA-256 of a payload file.
pub fn payload_sha256(path: &Path) -> String {
    sha256_file(path).unwrap_or_else(|| panic!("cannot read {}", path.display()))
}
