//! Final reports that must reach the controller.
//!
//! The job in hand is written here before its work starts, so an agent that loses power picks it up again on
//! start. A final report (succeeded, rejected, failed) is written here before it is first published, and stays
//! until the controller acknowledges its job. The agent repeats unacknowledged reports on every connect and
//! on a timer, so an outcome survives a lost message, a broker restart and an agent restart. Recently
//! finished jobs are remembered too, so a repeated command is answered with its outcome instead of being run
//! again.
//!
//! Two halves: [`Records`] is what the journal holds and every [`Change`] to it, with no IO and no clock, so
//! the agent's core decides on it directly; [`Journal`] keeps those records in `journal.json`, replaced whole
//! and atomically on every save.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bindwave_proto::wire::{Report, UpdateCommand};

use crate::slots::Active;
use serde::{Deserialize, Serialize};

use crate::storage::Durability;
use crate::AgentError;

/// An install waiting for its health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingHealth {
    pub job_id: String,
    pub installed: Active,
    /// What ran before; `None`: the factory software.
    pub previous: Option<Active>,
    pub override_used: bool,
}

/// How many finished jobs are remembered.
const HISTORY: usize = 64;

/// One change to the journal's records, as the agent's core asks for it to be made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The job about to be worked on, before any of its work.
    Begin(UpdateCommand),
    /// Installed and switched: the health check after the restart decides.
    AwaitHealth(AwaitingHealth),
    /// A final report, before it is first published; the job is no longer in hand.
    RecordFinal(Report),
    /// The controller has the outcome of this job.
    Ack(String),
    /// The controller asked for this finished job again, so it lacks the outcome: it is pending again.
    Resend(String),
    /// The job in hand is downloaded and verified, waiting for its install window: its time limit, which
    /// bounds the download, starts again from here for the read-back of its file after a restart.
    Downloaded(String),
}

/// What the journal holds. Pure: the time a job begins is an argument.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// The job being worked on, until its final report is recorded.
    #[serde(default)]
    current: Option<UpdateCommand>,
    /// When work on `current` began (seconds since the Unix epoch); its time limit counts from here, across
    /// restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current_since: Option<u64>,
    /// Installed and switched; the health check after the restart decides.
    #[serde(default)]
    awaiting_health: Option<AwaitingHealth>,
    /// Final reports not yet acknowledged.
    unacked: Vec<Report>,
    /// Final reports of recent jobs, newest last.
    history: VecDeque<Report>,
}

impl Records {
    /// Applies `change`; `now` is when it happens. Returns whether anything changed (an ack of a job already
    /// acknowledged, or a resend of one already pending, changes nothing).
    pub fn apply(&mut self, change: &Change, now: SystemTime) -> bool {
        match change {
            Change::Begin(cmd) => self.begin(cmd, now),
            Change::AwaitHealth(pending) => self.awaiting_health = Some(pending.clone()),
            Change::RecordFinal(report) => self.record_final(report),
            Change::Ack(job_id) => return self.ack(job_id),
            Change::Resend(job_id) => return self.resend(job_id),
            Change::Downloaded(job_id) => {
                if self.current.as_ref().is_none_or(|c| c.job_id != *job_id) {
                    return false;
                }
                self.current_since = Some(unix_secs(now));
            }
        }
        true
    }

    /// A job taken up again after a restart keeps the time it first began.
    fn begin(&mut self, cmd: &UpdateCommand, now: SystemTime) {
        let same = self.current.as_ref().is_some_and(|c| c.job_id == cmd.job_id);
        if !same || self.current_since.is_none() {
            self.current_since = Some(unix_secs(now));
        }
        self.current = Some(cmd.clone());
    }

    fn record_final(&mut self, report: &Report) {
        if self.current.as_ref().is_some_and(|c| c.job_id == report.job_id) {
            self.current = None;
            self.current_since = None;
        }
        if self.awaiting_health.as_ref().is_some_and(|h| h.job_id == report.job_id) {
            self.awaiting_health = None;
        }
        self.unacked.retain(|r| r.job_id != report.job_id);
        self.unacked.push(report.clone());
        self.history.retain(|r| r.job_id != report.job_id);
        self.history.push_back(report.clone());
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    fn ack(&mut self, job_id: &str) -> bool {
        let before = self.unacked.len();
        self.unacked.retain(|r| r.job_id != job_id);
        self.unacked.len() != before
    }

    fn resend(&mut self, job_id: &str) -> bool {
        match self.finished(job_id).cloned() {
            Some(r) if !self.unacked.iter().any(|u| u.job_id == job_id) => {
                self.unacked.push(r);
                true
            }
            _ => false,
        }
    }

    /// The job that was in hand when the agent last stopped, if it never finished.
    pub fn current(&self) -> Option<&UpdateCommand> {
        self.current.as_ref()
    }

    /// When work on the job in hand began.
    pub fn current_since(&self) -> Option<SystemTime> {
        self.current.as_ref()?;
        Some(UNIX_EPOCH + Duration::from_secs(self.current_since?))
    }

    pub fn awaiting_health(&self) -> Option<&AwaitingHealth> {
        self.awaiting_health.as_ref()
    }

    /// Final reports not yet acknowledged, oldest first.
    pub fn unacked(&self) -> &[Report] {
        &self.unacked
    }

    /// The most recent final report.
    pub fn last(&self) -> Option<&Report> {
        self.history.back()
    }

    /// The final report of a recently finished job.
    pub fn finished(&self, job_id: &str) -> Option<&Report> {
        self.history.iter().find(|r| r.job_id == job_id)
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The records in `journal.json`.
pub struct Journal {
    path: PathBuf,
    contents: Records,
    durability: Durability,
}

impl Journal {
    pub fn open(state_dir: &Path, durability: Durability) -> Result<Self, AgentError> {
        let path = state_dir.join("journal.json");
        let contents = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AgentError::Io {
                action: "parse the job journal",
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Records::default(),
            Err(source) => return Err(AgentError::Io { action: "read", path, source }),
        };
        Ok(Journal { path, contents, durability })
    }

    pub fn records(&self) -> &Records {
        &self.contents
    }

    /// The records to change in memory; [`Journal::save`] makes the changes durable.
    pub fn records_mut(&mut self) -> &mut Records {
        &mut self.contents
    }

    /// Applies `change` and, if it changed anything, saves. Returns whether it did.
    pub fn apply(&mut self, change: &Change) -> Result<bool, AgentError> {
        let changed = self.contents.apply(change, SystemTime::now());
        if changed {
            self.save()?;
        }
        Ok(changed)
    }

    /// Records the job about to be worked on, durably, before any of its work. A job taken up again after a
    /// restart keeps the time it first began.
    pub fn begin(&mut self, cmd: &UpdateCommand) -> Result<(), AgentError> {
        self.apply(&Change::Begin(cmd.clone())).map(drop)
    }

    /// When work on the job in hand began.
    pub fn current_since(&self) -> Option<SystemTime> {
        self.contents.current_since()
    }

    /// Records, durably, that a job installed and now waits for its health check (before the restart).
    pub fn await_health(&mut self, pending: AwaitingHealth) -> Result<(), AgentError> {
        self.apply(&Change::AwaitHealth(pending)).map(drop)
    }

    pub fn awaiting_health(&self) -> Option<&AwaitingHealth> {
        self.contents.awaiting_health()
    }

    /// The job that was in hand when the agent last stopped, if it never finished.
    pub fn current(&self) -> Option<&UpdateCommand> {
        self.contents.current()
    }

    /// Records a final report, durably, before it is published; the job is no longer in hand.
    pub fn record_final(&mut self, report: Report) -> Result<(), AgentError> {
        self.apply(&Change::RecordFinal(report)).map(drop)
    }

    /// The controller has the outcome of `job_id`. Returns whether anything changed.
    pub fn ack(&mut self, job_id: &str) -> Result<bool, AgentError> {
        self.apply(&Change::Ack(job_id.to_string()))
    }

    pub fn unacked(&self) -> &[Report] {
        self.contents.unacked()
    }

    /// The most recent final report.
    pub fn last(&self) -> Option<&Report> {
        self.contents.last()
    }

    /// The final report of a recently finished job.
    pub fn finished(&self, job_id: &str) -> Option<&Report> {
        self.contents.finished(job_id)
    }

    /// Makes a finished job's report pending again (the controller asked for the job again, so it lacks it).
    pub fn resend(&mut self, job_id: &str) -> Result<(), AgentError> {
        self.apply(&Change::Resend(job_id.to_string())).map(drop)
    }

    /// Writes the records, whole and atomically. Records that cannot be encoded are an error, never an empty
    /// file: an empty journal would forget the job in hand and every unacknowledged outcome.
    pub fn save(&self) -> Result<(), AgentError> {
        let bytes = serde_json::to_vec(&self.contents).map_err(|e| AgentError::Io {
            action: "encode the job journal for",
            path: self.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        self.durability.write_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindwave_proto::wire::JobState;

    fn report(job: &str) -> Report {
        Report {
            job_id: job.into(),
            state: JobState::Succeeded,
            progress: None,
            running_version: None,
            reason: None,
            override_used: false,
            download: None,
        }
    }

    #[test]
    fn unacked_reports_survive_reopening_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), Durability::Full).unwrap();
        j.record_final(report("j1")).unwrap();
        j.record_final(report("j2")).unwrap();
        assert!(j.ack("j1").unwrap());
        assert!(!j.ack("j1").unwrap());
        let mut j = Journal::open(dir.path(), Durability::Full).unwrap();
        assert_eq!(j.unacked().iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>(), ["j2"]);
        assert!(j.finished("j1").is_some());
        j.resend("j1").unwrap();
        assert_eq!(j.unacked().len(), 2);
    }

    #[test]
    fn history_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), Durability::Full).unwrap();
        for i in 0..(HISTORY + 10) {
            j.record_final(report(&format!("j{i}"))).unwrap();
            j.ack(&format!("j{i}")).unwrap();
        }
        assert!(j.finished("j0").is_none());
        assert!(j.finished(&format!("j{}", HISTORY + 9)).is_some());
    }

    #[test]
    fn a_job_taken_up_again_keeps_its_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = |id: &str| UpdateCommand {
            job_id: id.into(),
            rollout_id: "r".into(),
            url: "http://x/fw.bind".into(),
            size: 1,
            sha256: "00".into(),
            override_compat: false,
            use_defaults: false,
            timeout_secs: None,
            install_windows: vec![],
        };
        let mut j = Journal::open(dir.path(), Durability::Full).unwrap();
        assert!(j.current_since().is_none());
        j.begin(&cmd("j1")).unwrap();
        let since = j.contents.current_since.unwrap();
        // As if the job began an hour ago, then the agent restarted and took it up again.
        j.contents.current_since = Some(since - 3600);
        j.save().unwrap();
        let mut j = Journal::open(dir.path(), Durability::Full).unwrap();
        j.begin(&cmd("j1")).unwrap();
        assert_eq!(j.contents.current_since, Some(since - 3600));
        // Another job starts its own clock; a finished job has none.
        j.begin(&cmd("j2")).unwrap();
        assert!(j.contents.current_since.unwrap() >= since);
        j.record_final(Report { job_id: "j2".into(), ..report("j2") }).unwrap();
        assert!(j.current_since().is_none());
    }
}
