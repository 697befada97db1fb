//! Showing an update in progress, as the phone's LEDs and display do: on every state change the agent
//! writes `status.json` in its state directory (what `bindwave-agent status` prints), and, if configured,
//! runs an indicator command and/or writes the state to a file for the phone's own UI.

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
    pub fn start(settings: IndicatorSettings, status_file: PathBuf, durability: Durability) -> Indicator {
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
