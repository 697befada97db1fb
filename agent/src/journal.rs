//! Final reports that must reach the controller.
//!
//! The job in hand is written here before its work starts, so an agent that loses power picks it up again on
//! start. A final report (succeeded, rejected, failed) is written here before it is first published, and stays
//! until the controller acknowledges its job. The agent repeats unacknowledged reports on every connect and
//! on a timer, so an outcome survives a lost message, a broker restart and an agent restart. Recently
//! finished jobs are remembered too, so a repeated command is answered with its outcome instead of being run
//! again.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bindwave_proto::wire::{Report, UpdateCommand};

use crate::slots::Active;
use serde::{Deserialize, Serialize};

use crate::slots::write_atomic;
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

#[derive(Debug, Default, Serialize, Deserialize)]
struct Contents {
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

pub struct Journal {
    path: PathBuf,
    contents: Contents,
}

impl Journal {
    pub fn open(state_dir: &Path) -> Result<Self, AgentError> {
        let path = state_dir.join("journal.json");
        let contents = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AgentError::Io {
                action: "parse the job journal",
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Contents::default(),
            Err(source) => return Err(AgentError::Io { action: "read", path, source }),
        };
        Ok(Journal { path, contents })
    }

    /// Records the job about to be worked on, durably, before any of its work. A job taken up again after a
    /// restart keeps the time it first began.
    pub fn begin(&mut self, cmd: &UpdateCommand) -> Result<(), AgentError> {
        let same = self.contents.current.as_ref().is_some_and(|c| c.job_id == cmd.job_id);
        if !same || self.contents.current_since.is_none() {
            self.contents.current_since = Some(unix_now());
        }
        self.contents.current = Some(cmd.clone());
        self.save()
    }

    /// When work on the job in hand began.
    pub fn current_since(&self) -> Option<std::time::SystemTime> {
        self.contents.current.as_ref()?;
        let secs = self.contents.current_since?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    /// Records, durably, that a job installed and now waits for its health check (before the restart).
    pub fn await_health(&mut self, pending: AwaitingHealth) -> Result<(), AgentError> {
        self.contents.awaiting_health = Some(pending);
        self.save()
    }

    pub fn awaiting_health(&self) -> Option<&AwaitingHealth> {
        self.contents.awaiting_health.as_ref()
    }

    /// The job that was in hand when the agent last stopped, if it never finished.
    pub fn current(&self) -> Option<&UpdateCommand> {
        self.contents.current.as_ref()
    }

    /// Records a final report, durably, before it is published; the job is no longer in hand.
    pub fn record_final(&mut self, report: Report) -> Result<(), AgentError> {
        if self.contents.current.as_ref().is_some_and(|c| c.job_id == report.job_id) {
            self.contents.current = None;
            self.contents.current_since = None;
        }
        if self.contents.awaiting_health.as_ref().is_some_and(|h| h.job_id == report.job_id) {
            self.contents.awaiting_health = None;
        }
        self.contents.unacked.retain(|r| r.job_id != report.job_id);
        self.contents.unacked.push(report.clone());
        self.contents.history.retain(|r| r.job_id != report.job_id);
        self.contents.history.push_back(report);
        while self.contents.history.len() > HISTORY {
            self.contents.history.pop_front();
        }
        self.save()
    }

    /// The controller has the outcome of `job_id`. Returns whether anything changed.
    pub fn ack(&mut self, job_id: &str) -> Result<bool, AgentError> {
        let before = self.contents.unacked.len();
        self.contents.unacked.retain(|r| r.job_id != job_id);
        if self.contents.unacked.len() == before {
            return Ok(false);
        }
        self.save()?;
        Ok(true)
    }

    pub fn unacked(&self) -> &[Report] {
        &self.contents.unacked
    }

    /// The most recent final report.
    pub fn last(&self) -> Option<&Report> {
        self.contents.history.back()
    }

    /// The final report of a recently finished job.
    pub fn finished(&self, job_id: &str) -> Option<&Report> {
        self.contents.history.iter().find(|r| r.job_id == job_id)
    }

    /// Makes a finished job's report pending again (the controller asked for the job again, so it lacks it).
    pub fn resend(&mut self, job_id: &str) -> Result<(), AgentError> {
        if let Some(r) = self.finished(job_id).cloned() {
            if !self.contents.unacked.iter().any(|u| u.job_id == job_id) {
                self.contents.unacked.push(r);
                self.save()?;
            }
        }
        Ok(())
    }

    fn save(&self) -> Result<(), AgentError> {
        write_atomic(&self.path, &serde_json::to_vec(&self.contents).unwrap_or_default())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
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
        let mut j = Journal::open(dir.path()).unwrap();
        j.record_final(report("j1")).unwrap();
        j.record_final(report("j2")).unwrap();
        assert!(j.ack("j1").unwrap());
        assert!(!j.ack("j1").unwrap());
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.unacked().iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>(), ["j2"]);
        assert!(j.finished("j1").is_some());
        j.resend("j1").unwrap();
        assert_eq!(j.unacked().len(), 2);
    }

    #[test]
    fn history_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
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
        };
        let mut j = Journal::open(dir.path()).unwrap();
        assert!(j.current_since().is_none());
        j.begin(&cmd("j1")).unwrap();
        let since = j.contents.current_since.unwrap();
        // As if the job began an hour ago, then the agent restarted and took it up again.
        j.contents.current_since = Some(since - 3600);
        j.save().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.begin(&cmd("j1")).unwrap();
        assert_eq!(j.contents.current_since, Some(since - 3600));
        // Another job starts its own clock; a finished job has none.
        j.begin(&cmd("j2")).unwrap();
        assert!(j.contents.current_since.unwrap() >= since);
        j.record_final(Report { job_id: "j2".into(), ..report("j2") }).unwrap();
        assert!(j.current_since().is_none());
    }
}
