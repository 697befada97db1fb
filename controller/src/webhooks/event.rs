//! Which webhook events an audit entry is, and the JSON they carry. Pure.

use serde::{Deserialize, Serialize};

use crate::model::{AuditEntry, Millis, Rollout};

/// The body of a webhook notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `rollout.created`, `wave.started`, `gate.tripped`, ... (see [`events`]).
    pub event: String,
    pub at: Millis,
    /// The audit entry it comes from: its sequence number, actor and reason.
    pub audit_seq: u64,
    pub actor: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// The rollout's state after the event (`active`, `paused`, ...), its wave (from 1) and why it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<serde_json::Value>,
}

/// The events an audit entry is, in order: a gate that stops a rollout is `gate.tripped` and then what it did.
pub fn events(entry: &AuditEntry) -> Vec<&'static str> {
    let by_gate = entry.actor == crate::engine::SYSTEM_ACTOR;
    match entry.action.as_str() {
        "create" => vec!["rollout.created"],
        "start" => vec!["rollout.started"],
        "wave" if entry.reason.ends_with("started") => vec!["wave.started"],
        "wave" => vec!["wave.awaiting_approval"],
        "approve" => vec!["wave.approved"],
        "pass" => vec!["wave.passed"],
        "pause" if by_gate => vec!["gate.tripped", "rollout.paused"],
        "pause" => vec!["rollout.paused"],
        "abort" if by_gate => vec!["gate.tripped", "rollout.aborted"],
        "abort" => vec!["rollout.aborted"],
        "cancel" => vec!["rollout.cancelled"],
        "resume" => vec!["rollout.resumed"],
        "retry" => vec!["rollout.retried"],
        "finish" => vec!["rollout.finished"],
        "emergency_stop" => vec!["emergency_stop"],
        "analysis" => vec!["analysis.measurement_failed"],
        _ => Vec::new(),
    }
}

/// The notifications of an audit entry, with the rollout as it stands after it.
pub fn notifications(entry: &AuditEntry, rollout: Option<&Rollout>) -> Vec<Notification> {
    let state = rollout.and_then(|r| {
        let mut v = serde_json::to_value(&r.state).ok()?;
        if let Some(w) = v.get_mut("wave").and_then(|w| w.as_u64()) {
            v["wave"] = serde_json::Value::from(w + 1);
        }
        Some(v)
    });
    events(entry)
        .into_iter()
        .map(|event| Notification {
            event: event.to_string(),
            at: entry.at,
            audit_seq: entry.seq,
            actor: entry.actor.clone(),
            reason: entry.reason.clone(),
            rollout: entry.rollout.map(|r| r.to_string()),
            state: state.clone(),
        })
        .collect()
}

/// `X-Bindwave-Signature`: `sha256=` and the lowercase hex HMAC-SHA256 of the body, as GitHub signs its webhooks.
pub fn signature(key: &ring::hmac::Key, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(ring::hmac::sign(key, body).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RolloutId;

    fn entry(actor: &str, action: &str, reason: &str) -> AuditEntry {
        AuditEntry {
            seq: 7,
            at: 1000,
            actor: actor.into(),
            action: action.into(),
            rollout: Some(RolloutId::from(3)),
            reason: reason.into(),
        }
    }

    #[test]
    fn a_gate_that_stops_a_rollout_is_two_events_and_an_operator_pause_one() {
        assert_eq!(events(&entry("bindwave", "pause", "3 of 10 failed")), ["gate.tripped", "rollout.paused"]);
        assert_eq!(events(&entry("alice", "pause", "helpdesk")), ["rollout.paused"]);
        assert_eq!(events(&entry("bindwave", "abort", "x")), ["gate.tripped", "rollout.aborted"]);
        assert_eq!(events(&entry("bindwave", "wave", "wave 2 started")), ["wave.started"]);
        assert_eq!(events(&entry("bindwave", "wave", "wave 2 waits for approval")), ["wave.awaiting_approval"]);
        assert!(events(&entry("alice", "token", "x")).is_empty());
    }

    /// The signature is HMAC-SHA256 of the body: what a receiver computes with the same secret.
    #[test]
    fn the_signature_is_the_bodys_hmac() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"It's a Secret to Everybody");
        // GitHub's documented example of its webhook signature.
        assert_eq!(
            signature(&key, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let n = notifications(&entry("bindwave", "finish", "every wave passed"), None);
        assert_eq!(n[0].event, "rollout.finished");
        assert_eq!(n[0].rollout.as_deref(), Some("r3"));
    }
}
