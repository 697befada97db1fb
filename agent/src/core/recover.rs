//! What to pick up after a restart, decided from the journal's records and what the slots hold.

use bindwave_proto::wire::{JobState, Report, UpdateCommand};
use bindwave_proto::SoftwareVersion;

use crate::journal::{AwaitingHealth, Records};
use crate::slots::Active;

/// What the slots hold when the agent starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The active slot's record; `None` while the phone runs its factory software.
    pub active: Option<Active>,
    /// The other slot's own record: what ran before the active one, if that slot was ever written.
    pub other: Option<Active>,
}

/// What a restart picks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    Nothing,
    /// A job in hand, not installed yet: go on with it (its download resumes).
    Job(UpdateCommand),
    /// Installed and switched: the health check decides.
    Health(AwaitingHealth),
    /// Installed and switched, and no health check is configured: the job succeeded; record this report.
    Installed(Report),
}

/// An install waiting for its health check gets it; a job in hand found installed is finished (or checked);
/// any other job in hand is resumed; a job already finished is left alone.
pub fn recover(journal: &Records, found: &Found, running: &SoftwareVersion, health_check: bool) -> Resume {
    if let Some(pending) = journal.awaiting_health() {
        if journal.finished(&pending.job_id).is_none() {
            return Resume::Health(pending.clone());
        }
    }
    let Some(cmd) = journal.current() else { return Resume::Nothing };
    if journal.finished(&cmd.job_id).is_some() {
        return Resume::Nothing;
    }
    let installed = found.active.as_ref().filter(|a| a.job_id.as_deref() == Some(cmd.job_id.as_str()));
    let Some(active) = installed else { return Resume::Job(cmd.clone()) };
    if health_check {
        // The power went between the switch and the journal: what ran before is in the other slot's record.
        return Resume::Health(AwaitingHealth {
            job_id: cmd.job_id.clone(),
            installed: active.clone(),
            previous: found.other.clone(),
            override_used: false,
        });
    }
    // The power went after the switch and before the report: the job succeeded.
    Resume::Installed(Report {
        job_id: cmd.job_id.clone(),
        state: JobState::Succeeded,
        progress: None,
        running_version: Some(running.clone()),
        reason: None,
        override_used: false,
        download: None,
    })
}
