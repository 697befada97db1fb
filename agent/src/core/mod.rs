//! The agent's decisions: a pure state machine, the phone's counterpart of the controller's engine.
//!
//! [`Core::handle`] takes one [`Input`] (a command arriving, the link coming up or going down, a job's
//! progress and end, the report-retry timer, the restart) with the journal's [`Records`] and the current time,
//! and returns the [`Action`]s that carry the decision out, in order: persist a change to the journal, publish
//! a message, show a state on the indicator, start a job or a health check. It does no IO and reads no clock:
//! no socket, no file, no task. The driver ([`crate::agent`]) owns the MQTT client, the journal's file, the
//! slots and the job task; it feeds inputs in one at a time and carries out every action of a decision before
//! it takes the next input.
//!
//! What the core holds is what only this run of the agent knows: the commands queued behind the job in hand,
//! which job is in hand, whether the link is up, and the hello it sends (with the version that runs). What must
//! survive a restart is the journal's: the driver lends the core the journal's [`Records`] for each decision,
//! the core changes them in memory itself, and asks with [`Action::Persist`] for the change to be made durable.
//! Changing them itself, a decision sees its own changes (a resent outcome is among the reports it then
//! publishes), and the journal's rules (what a final report clears, what an ack removes) stay in one place.
//! The slots are read once, at the restart, into [`Found`]; [`recover`] decides from it and the records.
//!
//! The order of the actions is the point:
//! - **Persist, then act.** A job is persisted as begun before it starts; a final report is persisted before it
//!   is published; an install is persisted as awaiting its health check before the restart is let go on.
//! - **The outcome before the hello.** A hello while the controller still thinks the job runs would make it
//!   send the command again.
//! - **One job at a time, none twice.** A repeat of the job in hand (or of one queued) is ignored; a repeat of a
//!   finished job is answered with its recorded outcome; other commands wait their turn.
//! - **What must arrive is sent again.** Publishing never waits for the broker; unacknowledged final reports go
//!   out on every connect and every retry tick, hello and presence on every connect, and the presence again
//!   at every heartbeat (a broker restart may have lost the last will that would have said the phone left).

mod recover;
#[cfg(test)]
mod tests;
pub mod trust;

use std::collections::VecDeque;
use std::time::SystemTime;

use bindwave_proto::wire::{Command, Hello, JobState, Presence, Report, TopicKind, UpdateCommand};
use bindwave_proto::SoftwareVersion;

use crate::journal::{AwaitingHealth, Change, Records};

pub use recover::{recover, Found, Resume};
pub use trust::{CommandTrust, Refusal, Refusals, Trusted};

/// Something that happened, as the driver tells the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The agent has started: what its slots hold. The first input, once.
    Restarted(Found),
    /// The MQTT link is up (again).
    Connected,
    /// The MQTT link is down, and why; it reconnects by itself.
    Disconnected(String),
    /// A command on this phone's command topic.
    Command(Command),
    /// The running job's progress.
    Progress(Report),
    /// The running job installed and switched, and waits to restart for its health check.
    Installed(AwaitingHealth),
    /// The running job's final report.
    Done(Report),
    /// Time to repeat the final reports the controller has not acknowledged.
    RetryTick,
    /// Time for a heartbeat: the presence again, so the controller knows the phone is there.
    HeartbeatTick,
}

/// What the driver does, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the journal's records to disk, atomically, before any action that follows. The change named is
    /// already in the records (with any earlier change of the same decision).
    Persist(Change),
    /// Subscribe to this phone's command topic.
    Subscribe,
    /// Publish a message on this phone's topic of its kind, without waiting for the broker.
    Publish(Message),
    /// Show a job's state on the indicator and in `status.json`.
    Show(Report),
    /// Start working on a job: download, verify, install (the job's progress and end come back as inputs).
    Start(UpdateCommand),
    /// Run the health check of an install made before the restart (its end comes back as [`Input::Done`]).
    CheckHealth(AwaitingHealth),
    /// Ask the job in hand to stop if it has not begun to install. The job answers with its final report:
    /// `cancelled`, or, once the install has begun, its true outcome. A job that is not running (an install
    /// awaiting its health check) does not hear it.
    Cancel(String),
}

/// A message the agent publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Presence(Presence),
    Report(Report),
}

impl Message {
    /// The topic it goes to.
    pub fn kind(&self) -> TopicKind {
        match self {
            Message::Hello(_) => TopicKind::Hello,
            Message::Presence(_) => TopicKind::Presence,
            Message::Report(_) => TopicKind::Reports,
        }
    }

    /// Whether the broker keeps it for later subscribers: what the phone is, and whether it is there.
    pub fn retain(&self) -> bool {
        !matches!(self, Message::Report(_))
    }

    pub fn to_json(&self) -> Result<Vec<u8>, bindwave_proto::ProtoError> {
        match self {
            Message::Hello(h) => h.to_json(),
            Message::Presence(p) => p.to_json(),
            Message::Report(r) => r.to_json(),
        }
    }
}

/// The agent's state machine. See the module doc.
#[derive(Debug)]
pub struct Core {
    /// The hello this phone sends; its `software_version` is the version that runs.
    hello: Hello,
    /// A health check (or a reboot) is configured: success waits for the restart and the check.
    health_check: bool,
    /// The job in hand: running, or (after a restart) waiting for its health check.
    current: Option<String>,
    /// Commands waiting for the job in hand to end.
    queue: VecDeque<UpdateCommand>,
    connected: bool,
}

impl Core {
    /// A core for a phone that says `hello` (with the version it runs) and has, or has not, a health check.
    pub fn new(hello: Hello, health_check: bool) -> Core {
        Core { hello, health_check, current: None, queue: VecDeque::new(), connected: false }
    }

    /// The version that runs.
    pub fn running(&self) -> &SoftwareVersion {
        &self.hello.software_version
    }

    /// Decides what `input` means, changing `journal` in memory; `now` is when it happens.
    pub fn handle(&mut self, input: Input, journal: &mut Records, now: SystemTime) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Restarted(found) => self.restarted(&found, journal, now, &mut out),
            Input::Connected => {
                self.connected = true;
                tracing::info!(device = %self.hello.device_id, "connected to the broker");
                out.push(Action::Subscribe);
                out.push(Action::Publish(Message::Hello(self.hello.clone())));
                out.push(Action::Publish(Message::Presence(Presence { online: true })));
                publish_unacked(journal, &mut out);
            }
            Input::Disconnected(why) => {
                if self.connected {
                    tracing::warn!(device = %self.hello.device_id, "lost the broker: {why}; reconnecting");
                }
                self.connected = false;
            }
            Input::Command(Command::Update(cmd)) => self.update(cmd, journal, now, &mut out),
            Input::Command(Command::Ack { job_id }) => change(journal, Change::Ack(job_id), now, &mut out),
            Input::Command(Command::Cancel { job_id }) => self.cancel(job_id, journal, now, &mut out),
            Input::Progress(report) => {
                if report.state == JobState::Downloaded {
                    // Verified and waiting for its window: a restart reads the file back under a fresh limit.
                    change(journal, Change::Downloaded(report.job_id.clone()), now, &mut out);
                }
                out.push(Action::Show(report.clone()));
                out.push(Action::Publish(Message::Report(report)));
            }
            Input::Installed(pending) => change(journal, Change::AwaitHealth(pending), now, &mut out),
            Input::Done(report) => self.done(report, journal, now, &mut out),
            Input::RetryTick => {
                if self.connected {
                    publish_unacked(journal, &mut out);
                }
            }
            Input::HeartbeatTick => {
                if self.connected {
                    out.push(Action::Publish(Message::Presence(Presence { online: true })));
                }
            }
        }
        out
    }

    fn restarted(&mut self, found: &Found, journal: &mut Records, now: SystemTime, out: &mut Vec<Action>) {
        match recover(journal, found, self.running(), self.health_check) {
            Resume::Nothing => {}
            Resume::Job(cmd) => {
                tracing::info!(device = %self.hello.device_id, job = %cmd.job_id, "resuming the job in hand before the restart");
                self.queue.push_back(cmd);
                self.start_next(journal, now, out);
            }
            Resume::Health(pending) => {
                tracing::info!(device = %self.hello.device_id, job = %pending.job_id, "started after an install: checking health");
                self.current = Some(pending.job_id.clone());
                out.push(Action::CheckHealth(pending));
            }
            // The power went after the switch and before the report: the job succeeded. The report goes out
            // with the other unacknowledged ones once the link is up.
            Resume::Installed(report) => change(journal, Change::RecordFinal(report), now, out),
        }
    }

    fn update(&mut self, cmd: UpdateCommand, journal: &mut Records, now: SystemTime, out: &mut Vec<Action>) {
        if self.current.as_deref() == Some(&cmd.job_id) || self.queue.iter().any(|q| q.job_id == cmd.job_id) {
            return; // a repeat of a job in hand
        }
        if journal.finished(&cmd.job_id).is_some() {
            // The controller asks again, so it lacks the outcome: repeat it rather than run the job twice.
            change(journal, Change::Resend(cmd.job_id), now, out);
            publish_unacked(journal, out);
            return;
        }
        tracing::info!(device = %self.hello.device_id, job = %cmd.job_id, url = %cmd.url, "update command");
        self.queue.push_back(cmd);
        self.start_next(journal, now, out);
    }

    /// The controller cancels a job: the job in hand is asked to stop (it answers), a queued one is dropped,
    /// a finished one's true outcome is sent again, and one never heard of is recorded as cancelled, so that
    /// its command, arriving late, is answered and not run.
    fn cancel(&mut self, job_id: String, journal: &mut Records, now: SystemTime, out: &mut Vec<Action>) {
        if self.current.as_deref() == Some(job_id.as_str()) {
            tracing::info!(device = %self.hello.device_id, job = %job_id, "cancel: stopping the job in hand");
            out.push(Action::Cancel(job_id));
            return;
        }
        if journal.finished(&job_id).is_some() {
            change(journal, Change::Resend(job_id), now, out);
            publish_unacked(journal, out);
            return;
        }
        self.queue.retain(|q| q.job_id != job_id);
        tracing::info!(device = %self.hello.device_id, job = %job_id, "cancel: the job had not started");
        let report = Report {
            running_version: Some(self.hello.software_version.clone()),
            ..progress(&job_id, JobState::Cancelled, None)
        };
        change(journal, Change::RecordFinal(report.clone()), now, out);
        out.push(Action::Show(report.clone()));
        out.push(Action::Publish(Message::Report(report)));
    }

    fn done(&mut self, report: Report, journal: &mut Records, now: SystemTime, out: &mut Vec<Action>) {
        tracing::info!(device = %self.hello.device_id, job = %report.job_id, state = %report.state,
            reason = report.reason.as_ref().map(|r| r.to_string()), "job finished");
        change(journal, Change::RecordFinal(report.clone()), now, out);
        out.push(Action::Show(report.clone()));
        let running = report.running_version.clone();
        // The outcome first: a hello while the controller still thinks the job runs would make it send the
        // command again.
        out.push(Action::Publish(Message::Report(report)));
        if let Some(v) = running.filter(|v| *v != self.hello.software_version) {
            self.hello.software_version = v;
            out.push(Action::Publish(Message::Hello(self.hello.clone())));
        }
        self.current = None;
        self.start_next(journal, now, out);
    }

    /// Takes up the next queued command if no job is in hand: persisted as begun, shown and reported
    /// `received`, then started.
    fn start_next(&mut self, journal: &mut Records, now: SystemTime, out: &mut Vec<Action>) {
        if self.current.is_some() {
            return;
        }
        let Some(cmd) = self.queue.pop_front() else { return };
        change(journal, Change::Begin(cmd.clone()), now, out);
        self.current = Some(cmd.job_id.clone());
        let received = progress(&cmd.job_id, JobState::Received, None);
        out.push(Action::Show(received.clone()));
        out.push(Action::Publish(Message::Report(received)));
        out.push(Action::Start(cmd));
    }
}

/// Applies `change` to the records and, if it changed anything, asks for it to be persisted.
fn change(journal: &mut Records, change: Change, now: SystemTime, out: &mut Vec<Action>) {
    if journal.apply(&change, now) {
        out.push(Action::Persist(change));
    }
}

fn publish_unacked(journal: &Records, out: &mut Vec<Action>) {
    out.extend(journal.unacked().iter().map(|r| Action::Publish(Message::Report(r.clone()))));
}

/// A progress report: where a job stands, with no outcome yet.
pub fn progress(job_id: &str, state: JobState, percent: Option<u8>) -> Report {
    Report {
        job_id: job_id.to_string(),
        state,
        progress: percent,
        running_version: None,
        reason: None,
        override_used: false,
        download: None,
    }
}
