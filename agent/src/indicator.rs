//! Showing an update in progress, as the phone's LEDs and display do: on every state change the agent
//! writes `status.json` in its state directory (what `bindwave-agent status` prints), and, if configured,
//! runs an indicator command and/or writes the state to a file for the phone's own UI.
//!
//! Both files are replaced atomically (a reader sees the old state or the new one, whole) but not synced: they
//! say what the phone is doing now, and the agent writes them again as it starts (idle, then the job it
//! resumes), so a power cut can cost at most a state the agent is about to replace. That spares a phone's
//! flash two syncs per state shown, ten a job. What must survive a power cut (the journal, the slots, a staged
//! payload, a partial download) is synced as before.

use std::path::PathBuf;
use std::time::Duration;

use bindwave_proto::wire::Report;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::core::trust::RefusedCounts;
use crate::storage::Durability;

/// `[indicator]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndicatorSettings {
    /// Run on every state change, with `BINDWAVE_STATE`, `BINDWAVE_JOB`, `BINDWAVE_PROGRESS` and
    /// `BINDWAVE_REASON` set (e.g. a script that blinks the LEDs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// A file that always holds the current state as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// What the phone is doing, as `status.json` and the indicator file hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `idle`, or a job state (`downloading`, `installing`, ...).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub updated_at: u64,
    /// Commands refused since the agent started, by reason (`unsigned`, `untrusted_key`, ...).
    #[serde(default, skip_serializing_if = "RefusedCounts::is_empty")]
    pub commands_refused: RefusedCounts,
}

impl Status {
    pub fn idle() -> Status {
        Status {
            state: "idle".into(),
            job_id: None,
            progress: None,
            reason: None,
            updated_at: now(),
            commands_refused: RefusedCounts::new(),
        }
    }

    pub fn of(report: &Report) -> Status {
        Status {
            state: report.state.to_string(),
            job_id: Some(report.job_id.clone()),
            progress: report.progress,
            reason: report.reason.as_ref().map(ToString::to_string),
            updated_at: now(),
            commands_refused: RefusedCounts::new(),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What the indicator is told: a new state, or new counts of refused commands (written to `status.json`
/// with the state, without running the indicator command: nothing changed on the phone). Boxed, as the job's
/// events are: a channel keeps a block of 32 messages from its start.
enum Shown {
    State(Box<Status>),
    Refused(RefusedCounts),
}

/// Shows states in order, one at a time, off the agent's event loop.
#[derive(Clone)]
pub struct Indicator {
    tx: mpsc::UnboundedSender<Shown>,
}

impl Indicator {
    pub fn start(settings: IndicatorSettings, status_file: PathBuf) -> Indicator {
        // Shown, not kept: see the module's notes.
        let durability = Durability::NoSync;
        let (tx, mut rx) = mpsc::unbounded_channel::<Shown>();
        tokio::spawn(async move {
            let mut status = Status::idle();
            let mut refused = RefusedCounts::new();
            while let Some(first) = rx.recv().await {
                // Only the newest of a burst matters to a display.
                let mut changed = false;
                let mut next = Some(first);
                while let Some(shown) = next.take().or_else(|| rx.try_recv().ok()) {
                    match shown {
                        Shown::State(s) => (status, changed) = (*s, true),
                        Shown::Refused(counts) => refused = counts,
                    }
                }
                status.commands_refused = refused.clone();
                // An empty file would say less than the last one: a status that cannot be encoded leaves it.
                match serde_json::to_vec(&status) {
                    Ok(json) => {
                        if let Err(e) = durability.write_atomic(&status_file, &json) {
                            tracing::warn!("cannot write the status file: {e}");
                        }
                        if let Some(file) = &settings.file {
                            if let Err(e) = durability.write_atomic(file, &json) {
                                tracing::warn!("cannot write the indicator file: {e}");
                            }
                        }
                    }
                    Err(e) => tracing::warn!("cannot encode the status: {e}"),
                }
                if let Some(cmd) = settings.command.as_ref().filter(|_| changed) {
                    let env = [
                        ("BINDWAVE_STATE", status.state.clone()),
                        ("BINDWAVE_JOB", status.job_id.clone().unwrap_or_default()),
                        ("BINDWAVE_PROGRESS", status.progress.map(|p| p.to_string()).unwrap_or_default()),
                        ("BINDWAVE_REASON", status.reason.clone().unwrap_or_default()),
                    ];
                    if let Err(e) = crate::hooks::run(cmd, &env, Duration::from_secs(10)).await {
                        tracing::warn!("indicator command: {e}");
                    }
                }
            }
        });
        Indicator { tx }
    }

    pub fn show(&self, status: Status) {
        let _ = self.tx.send(Shown::State(Box::new(status)));
    }

    /// New counts of refused commands, for `status.json`.
    pub fn refused(&self, counts: RefusedCounts) {
        let _ = self.tx.send(Shown::Refused(counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_status_left_by_a_power_cut_is_replaced_whole_by_the_first_state_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status.json");
        // What an unsynced file can be after a power cut: an old state, or nothing at all.
        for stale in [&br#"{"state":"installing","job_id":"r1","updated_at":1}"#[..], b""] {
            std::fs::write(&file, stale).unwrap();
            let indicator = Indicator::start(IndicatorSettings::default(), file.clone());
            indicator.show(Status::idle());
            let mut shown = None;
            for _ in 0..200 {
                shown = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<Status>(&b).ok());
                if shown.as_ref().is_some_and(|s| s.state == "idle") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let shown = shown.expect("status.json holds a whole status");
            assert_eq!((shown.state.as_str(), shown.job_id), ("idle", None));
            assert!(!dir.path().join("status.tmp").exists(), "the replacement is renamed into place");
        }
    }
}
