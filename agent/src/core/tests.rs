//! The core's unit tests: every decision, with no socket, no file and no clock.

use std::time::{Duration, UNIX_EPOCH};

use bindwave_proto::wire::{DeviceId, LevelSource, Reason};
use bindwave_proto::HardwareLevel;

use super::*;
use crate::slots::{Active, Slot};

fn version(v: &str) -> SoftwareVersion {
    v.parse().unwrap()
}

fn hello() -> Hello {
    Hello {
        device_id: DeviceId::new("phone-1").unwrap(),
        part_number: "P3".into(),
        hardware_level: HardwareLevel(3),
        hardware_level_source: LevelSource::PartNumber,
        hardware_level_conflict: None,
        software_version: version("V3 R3.0.0"),
        minimum_software_version: version("V3 R1.0.0"),
        agent_version: "0.1.0".into(),
        model: None,
        labels: [].into(),
        heartbeat_secs: None,
        timezone: None,
    }
}

fn cmd(job: &str) -> UpdateCommand {
    UpdateCommand {
        job_id: job.into(),
        rollout_id: "r1".into(),
        url: format!("http://127.0.0.1/{job}.bind"),
        size: 1024,
        sha256: "00".into(),
        override_compat: false,
        use_defaults: false,
        timeout_secs: None,
        install_windows: vec![],
    }
}

fn outcome(job: &str, state: JobState, running: &str) -> Report {
    let reason = (state == JobState::Failed).then(|| Reason::InstallFailed { detail: "no space".into() });
    Report { running_version: Some(version(running)), reason, ..progress(job, state, None) }
}

fn active(job: &str, v: &str) -> Active {
    Active { slot: Slot::B, version: version(v), job_id: Some(job.into()) }
}

/// A phone's core and its journal's records, as a fresh agent has them.
struct Phone {
    core: Core,
    journal: Records,
    now: SystemTime,
}

impl Phone {
    fn new(health_check: bool) -> Phone {
        Phone { core: Core::new(hello(), health_check), journal: Records::default(), now: UNIX_EPOCH }
    }

    /// As a restarted agent finds its journal.
    fn with_journal(journal: Records, health_check: bool) -> Phone {
        Phone { journal, ..Phone::new(health_check) }
    }

    fn on(&mut self, input: Input) -> Vec<Action> {
        self.now += Duration::from_secs(10);
        self.core.handle(input, &mut self.journal, self.now)
    }

    fn command(&mut self, job: &str) -> Vec<Action> {
        self.on(Input::Command(Command::Update(cmd(job))))
    }
}

fn received(job: &str) -> Report {
    progress(job, JobState::Received, None)
}

/// What taking up a job does: persisted as begun, shown and reported `received`, then started.
fn started(job: &str) -> Vec<Action> {
    vec![
        Action::Persist(Change::Begin(cmd(job))),
        Action::Show(received(job)),
        Action::Publish(Message::Report(received(job))),
        Action::Start(cmd(job)),
    ]
}

fn published(actions: &[Action]) -> Vec<&Message> {
    actions.iter().filter_map(|a| if let Action::Publish(m) = a { Some(m) } else { None }).collect()
}

fn unacked(journal: &Records) -> Vec<&str> {
    journal.unacked().iter().map(|r| r.job_id.as_str()).collect()
}

#[test]
fn a_new_command_is_begun_reported_received_and_started() {
    let mut p = Phone::new(false);
    assert_eq!(p.command("j1"), started("j1"));
    assert_eq!(p.journal.current(), Some(&cmd("j1")), "the job in hand is in the journal");
    assert_eq!(p.journal.current_since(), Some(p.now), "its time limit counts from now");
}

#[test]
fn a_repeat_of_the_job_in_hand_or_of_one_queued_is_ignored() {
    let mut p = Phone::new(false);
    p.command("j1");
    assert_eq!(p.command("j1"), [], "the job in hand");
    assert_eq!(p.command("j2"), [], "queued behind j1");
    assert_eq!(p.command("j2"), [], "a repeat of a queued job");
    let ended = p.on(Input::Done(outcome("j1", JobState::Succeeded, "V3 R3.0.0")));
    assert_eq!(ended.iter().filter(|a| matches!(a, Action::Start(_))).count(), 1, "j2 starts once: {ended:?}");
}

#[test]
fn a_repeat_of_a_finished_job_resends_its_outcome_instead_of_running_it_again() {
    let mut p = Phone::new(false);
    p.command("j1");
    let report = outcome("j1", JobState::Failed, "V3 R3.0.0");
    p.on(Input::Done(report.clone()));
    p.on(Input::Command(Command::Ack { job_id: "j1".into() }));
    assert!(p.journal.unacked().is_empty());
    // The controller asks again: it lacks the outcome.
    assert_eq!(
        p.command("j1"),
        [Action::Persist(Change::Resend("j1".into())), Action::Publish(Message::Report(report.clone()))]
    );
    assert_eq!(unacked(&p.journal), ["j1"], "pending again until acknowledged");
    // Asked again before the ack: the outcome again, nothing new to persist.
    assert_eq!(p.command("j1"), [Action::Publish(Message::Report(report))]);
}

#[test]
fn commands_queue_behind_the_running_job_and_start_when_it_ends() {
    let mut p = Phone::new(false);
    p.command("j1");
    assert_eq!(p.command("j2"), []);
    assert_eq!(p.command("j3"), []);
    let ended = p.on(Input::Done(outcome("j1", JobState::Rejected, "V3 R3.0.0")));
    assert!(ended.ends_with(&started("j2")), "{ended:?}");
    assert_eq!(p.journal.current(), Some(&cmd("j2")));
    let ended = p.on(Input::Done(outcome("j2", JobState::Rejected, "V3 R3.0.0")));
    assert!(ended.ends_with(&started("j3")), "{ended:?}");
    let ended = p.on(Input::Done(outcome("j3", JobState::Rejected, "V3 R3.0.0")));
    assert!(!ended.iter().any(|a| matches!(a, Action::Start(_))), "{ended:?}");
    assert_eq!(p.journal.current(), None);
    assert_eq!(unacked(&p.journal), ["j1", "j2", "j3"]);
}

#[test]
fn a_final_report_is_journaled_before_it_is_published_and_a_new_version_is_said_in_hello() {
    let mut p = Phone::new(false);
    p.command("j1");
    let report = outcome("j1", JobState::Succeeded, "V3 R3.18.0");
    let mut new_hello = hello();
    new_hello.software_version = version("V3 R3.18.0");
    assert_eq!(
        p.on(Input::Done(report.clone())),
        [
            Action::Persist(Change::RecordFinal(report.clone())),
            Action::Show(report.clone()),
            Action::Publish(Message::Report(report.clone())),
            Action::Publish(Message::Hello(new_hello.clone())),
        ]
    );
    assert_eq!(p.core.running(), &version("V3 R3.18.0"));
    assert_eq!(p.journal.finished("j1"), Some(&report));
    assert_eq!(p.journal.current(), None, "no longer in hand");
    // A job that changes nothing that runs says no hello.
    p.command("j2");
    let failed = outcome("j2", JobState::Failed, "V3 R3.18.0");
    let ended = p.on(Input::Done(failed.clone()));
    assert_eq!(published(&ended), [&Message::Report(failed)]);
    // The next connect's hello carries the new version.
    let connected = p.on(Input::Connected);
    assert_eq!(published(&connected)[0], &Message::Hello(new_hello));
}

#[test]
fn an_ack_clears_the_outcome_once() {
    let mut p = Phone::new(false);
    p.command("j1");
    p.on(Input::Done(outcome("j1", JobState::Succeeded, "V3 R3.0.0")));
    let ack = || Input::Command(Command::Ack { job_id: "j1".into() });
    assert_eq!(p.on(ack()), [Action::Persist(Change::Ack("j1".into()))]);
    assert!(p.journal.unacked().is_empty());
    assert!(p.journal.finished("j1").is_some(), "the outcome is still remembered");
    assert_eq!(p.on(ack()), [], "a repeated ack changes nothing");
    assert_eq!(p.on(Input::Command(Command::Ack { job_id: "unknown".into() })), []);
}

#[test]
fn a_connect_subscribes_and_publishes_hello_presence_and_every_unacknowledged_report() {
    let mut p = Phone::new(false);
    for job in ["j1", "j2"] {
        p.command(job);
        p.on(Input::Done(outcome(job, JobState::Rejected, "V3 R3.0.0")));
    }
    assert_eq!(
        p.on(Input::Connected),
        [
            Action::Subscribe,
            Action::Publish(Message::Hello(hello())),
            Action::Publish(Message::Presence(Presence { online: true })),
            Action::Publish(Message::Report(outcome("j1", JobState::Rejected, "V3 R3.0.0"))),
            Action::Publish(Message::Report(outcome("j2", JobState::Rejected, "V3 R3.0.0"))),
        ]
    );
    p.on(Input::Command(Command::Ack { job_id: "j1".into() }));
    // The retry timer repeats what is not acknowledged, while the link is up.
    assert_eq!(
        p.on(Input::RetryTick),
        [Action::Publish(Message::Report(outcome("j2", JobState::Rejected, "V3 R3.0.0")))]
    );
    assert_eq!(p.on(Input::Disconnected("broker gone".into())), []);
    assert_eq!(p.on(Input::RetryTick), [], "nothing is published while the link is down");
}

/// A heartbeat publishes the presence again while the link is up, and nothing while it is down.
#[test]
fn a_heartbeat_publishes_the_presence_again_while_connected() {
    let mut p = Phone::new(false);
    assert_eq!(p.on(Input::HeartbeatTick), [], "nothing before the link is up");
    p.on(Input::Connected);
    assert_eq!(p.on(Input::HeartbeatTick), [Action::Publish(Message::Presence(Presence { online: true }))]);
    p.on(Input::Disconnected("broker gone".into()));
    assert_eq!(p.on(Input::HeartbeatTick), []);
}

#[test]
fn progress_is_shown_and_published_and_an_install_is_journaled_before_the_restart() {
    let mut p = Phone::new(true);
    p.command("j1");
    let downloading = progress("j1", JobState::Downloading, Some(40));
    assert_eq!(
        p.on(Input::Progress(downloading.clone())),
        [Action::Show(downloading.clone()), Action::Publish(Message::Report(downloading))]
    );
    let pending = AwaitingHealth {
        job_id: "j1".into(),
        installed: active("j1", "V3 R3.18.0"),
        previous: None,
        override_used: false,
    };
    assert_eq!(p.on(Input::Installed(pending.clone())), [Action::Persist(Change::AwaitHealth(pending.clone()))]);
    assert_eq!(p.journal.awaiting_health(), Some(&pending));
    let healthy = outcome("j1", JobState::Succeeded, "V3 R3.18.0");
    p.on(Input::Done(healthy));
    assert_eq!(p.journal.awaiting_health(), None, "the final report ends the wait");
}

/// The journal as an agent left it when the power went during `job`.
fn in_hand(job: &str) -> Records {
    let mut journal = Records::default();
    journal.apply(&Change::Begin(cmd(job)), UNIX_EPOCH + Duration::from_secs(5));
    journal
}

#[test]
fn after_a_restart_the_job_in_hand_resumes_and_keeps_its_start_time() {
    let mut p = Phone::with_journal(in_hand("j1"), false);
    assert_eq!(p.on(Input::Restarted(Found::default())), started("j1"));
    assert_eq!(p.journal.current_since(), Some(UNIX_EPOCH + Duration::from_secs(5)));
    assert_eq!(p.command("j1"), [], "the resumed job is in hand");
}

#[test]
fn after_a_restart_a_job_found_installed_without_a_health_check_succeeded() {
    let found = Found { active: Some(active("j1", "V3 R3.18.0")), other: None };
    let mut p = Phone::with_journal(in_hand("j1"), false);
    p.core.hello.software_version = version("V3 R3.18.0"); // the driver reads the running version off the slots
    let success = outcome("j1", JobState::Succeeded, "V3 R3.18.0");
    assert_eq!(p.on(Input::Restarted(found)), [Action::Persist(Change::RecordFinal(success.clone()))]);
    assert_eq!(p.journal.current(), None);
    // Published with the other outcomes once the link is up.
    assert_eq!(published(&p.on(Input::Connected)).last(), Some(&&Message::Report(success)));
}

#[test]
fn after_a_restart_a_job_found_installed_with_a_health_check_is_checked() {
    let previous = Active { slot: Slot::A, version: version("V3 R3.11.0"), job_id: Some("j0".into()) };
    let found = Found { active: Some(active("j1", "V3 R3.18.0")), other: Some(previous.clone()) };
    let mut p = Phone::with_journal(in_hand("j1"), true);
    let pending = AwaitingHealth {
        job_id: "j1".into(),
        installed: active("j1", "V3 R3.18.0"),
        previous: Some(previous),
        override_used: false,
    };
    assert_eq!(p.on(Input::Restarted(found)), [Action::CheckHealth(pending)]);
    assert_eq!(p.command("j1"), [], "the job being checked is in hand");
    assert_eq!(p.command("j2"), [], "and others wait for it");
    let ended = p.on(Input::Done(outcome("j1", JobState::RolledBack, "V3 R3.11.0")));
    assert!(ended.ends_with(&started("j2")), "{ended:?}");
}

#[test]
fn after_a_restart_an_install_awaiting_its_health_check_gets_it() {
    let pending = AwaitingHealth {
        job_id: "j1".into(),
        installed: active("j1", "V3 R3.18.0"),
        previous: None,
        override_used: true,
    };
    let mut journal = in_hand("j1");
    journal.apply(&Change::AwaitHealth(pending.clone()), UNIX_EPOCH);
    let found = Found { active: Some(active("j1", "V3 R3.18.0")), other: None };
    let mut p = Phone::with_journal(journal.clone(), true);
    assert_eq!(p.on(Input::Restarted(found.clone())), [Action::CheckHealth(pending)]);
    // Once its outcome is recorded there is nothing to pick up.
    journal.apply(&Change::RecordFinal(outcome("j1", JobState::Succeeded, "V3 R3.18.0")), UNIX_EPOCH);
    assert_eq!(recover(&journal, &found, &version("V3 R3.18.0"), true), Resume::Nothing);
}

#[test]
fn after_a_restart_with_nothing_in_hand_nothing_happens() {
    let mut p = Phone::new(true);
    assert_eq!(p.on(Input::Restarted(Found { active: Some(active("j0", "V3 R3.11.0")), other: None })), []);
    // A job whose outcome is recorded is not in hand any more, whatever the slots say.
    let mut journal = in_hand("j1");
    journal.apply(&Change::RecordFinal(outcome("j1", JobState::Succeeded, "V3 R3.18.0")), UNIX_EPOCH);
    let found = Found { active: Some(active("j1", "V3 R3.18.0")), other: None };
    assert_eq!(recover(&journal, &found, &version("V3 R3.18.0"), false), Resume::Nothing);
    assert_eq!(recover(&Records::default(), &Found::default(), &version("V3 R3.0.0"), false), Resume::Nothing);
}

#[test]
fn messages_go_to_their_topics_and_only_reports_are_not_retained() {
    let report = Message::Report(received("j1"));
    assert_eq!((report.kind(), report.retain()), (TopicKind::Reports, false));
    let hello = Message::Hello(hello());
    assert_eq!((hello.kind(), hello.retain()), (TopicKind::Hello, true));
    let presence = Message::Presence(Presence { online: true });
    assert_eq!((presence.kind(), presence.retain()), (TopicKind::Presence, true));
    assert_eq!(presence.to_json().unwrap(), Presence { online: true }.to_json().unwrap());
}

/// A signed command captured off an open broker and published again, still within its expiry, verifies (it
/// is the controller's), but the journal knows the job: the phone answers with the recorded outcome and
/// installs nothing again.
#[test]
fn a_replayed_signed_command_verifies_but_installs_nothing_again() {
    use bindwave_proto::command_signing::signed_message;
    use bindwave_proto::wire::CommandMessage;
    use bindwave_proto::{PublicKey, Signature, TrustedKeys};
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    let pair = Ed25519KeyPair::from_seed_unchecked(&[9u8; 32]).unwrap();
    let public = PublicKey(pair.public_key().as_ref().try_into().unwrap());
    let trust = CommandTrust::new(TrustedKeys::new([public]), hello().device_id, false);
    let command = Command::Update(cmd("r1-phone-1"));
    let expires_at = 1_000_000;
    let bytes = pair.sign(&signed_message(&hello().device_id, &command, expires_at)).as_ref().try_into().unwrap();
    let message = CommandMessage {
        command,
        expires_at: Some(expires_at),
        signature: Some(Signature { key_id: public.key_id(), bytes }),
    };

    let mut p = Phone::new(false);
    let taken = trust.judge(message.clone(), p.now).unwrap();
    assert_eq!(p.on(Input::Command(taken.command)), started("r1-phone-1"));
    p.on(Input::Done(outcome("r1-phone-1", JobState::Succeeded, "V3 R3.18.0")));
    p.on(Input::Command(Command::Ack { job_id: "r1-phone-1".into() }));

    let replayed = trust.judge(message, p.now).unwrap();
    let actions = p.on(Input::Command(replayed.command));
    assert!(!actions.iter().any(|a| matches!(a, Action::Start(_))), "{actions:?}");
    assert!(matches!(actions.last(), Some(Action::Publish(Message::Report(r))) if r.state == JobState::Succeeded));
}

fn cancel(job: &str) -> Input {
    Input::Command(Command::Cancel { job_id: job.into() })
}

fn cancelled(job: &str) -> Report {
    Report { running_version: Some(version("V3 R3.0.0")), ..progress(job, JobState::Cancelled, None) }
}

/// The job in hand is asked to stop, and answers itself: the core cannot know whether its install has begun.
#[test]
fn a_cancel_of_the_job_in_hand_goes_to_the_job_which_answers() {
    let mut p = Phone::new(false);
    p.command("j1");
    assert_eq!(p.on(cancel("j1")), [Action::Cancel("j1".into())]);
    assert_eq!(p.journal.current(), Some(&cmd("j1")), "still in hand until the job answers");
    let ended = p.on(Input::Done(cancelled("j1")));
    assert_eq!(ended[0], Action::Persist(Change::RecordFinal(cancelled("j1"))));
    assert_eq!(unacked(&p.journal), ["j1"], "the cancelled outcome is repeated until acknowledged");
    assert_eq!(p.command("j1"), [Action::Publish(Message::Report(cancelled("j1")))], "a late repeat: the outcome");
}

#[test]
fn a_cancel_of_a_queued_job_drops_it_and_reports_cancelled() {
    let mut p = Phone::new(false);
    p.command("j1");
    p.command("j2");
    assert_eq!(
        p.on(cancel("j2")),
        [
            Action::Persist(Change::RecordFinal(cancelled("j2"))),
            Action::Show(cancelled("j2")),
            Action::Publish(Message::Report(cancelled("j2"))),
        ]
    );
    let ended = p.on(Input::Done(outcome("j1", JobState::Succeeded, "V3 R3.0.0")));
    assert!(!ended.iter().any(|a| matches!(a, Action::Start(_))), "j2 never starts: {ended:?}");
}

/// A cancel that comes after the outcome (the install switched first) is answered with the true outcome.
#[test]
fn a_cancel_of_a_finished_job_sends_its_true_outcome_again() {
    let mut p = Phone::new(false);
    p.command("j1");
    let report = outcome("j1", JobState::Succeeded, "V3 R3.18.0");
    p.on(Input::Done(report.clone()));
    p.on(Input::Command(Command::Ack { job_id: "j1".into() }));
    let answered = p.on(cancel("j1"));
    assert_eq!(published(&answered), [&Message::Report(report)], "never a false cancelled");
}

/// A cancel that overtakes its command: the job is recorded as cancelled, and the command, arriving late, is
/// answered with that outcome instead of being run.
#[test]
fn a_cancel_before_its_command_keeps_the_command_from_running() {
    let mut p = Phone::new(false);
    p.on(cancel("j1"));
    assert_eq!(unacked(&p.journal), ["j1"]);
    let late = p.command("j1");
    assert!(!late.iter().any(|a| matches!(a, Action::Start(_))), "{late:?}");
    assert_eq!(published(&late), [&Message::Report(cancelled("j1"))]);
}

/// `downloaded` is shown, published, and journaled: a restart reads the file back under a fresh time limit.
#[test]
fn a_downloaded_job_restarts_its_time_limit_for_the_read_back() {
    let mut p = Phone::new(false);
    p.command("j1");
    let began = p.journal.current_since();
    let downloaded = progress("j1", JobState::Downloaded, None);
    let actions = p.on(Input::Progress(downloaded.clone()));
    assert_eq!(
        actions,
        [
            Action::Persist(Change::Downloaded("j1".into())),
            Action::Show(downloaded.clone()),
            Action::Publish(Message::Report(downloaded)),
        ]
    );
    assert!(p.journal.current_since() > began, "{:?} after {began:?}", p.journal.current_since());
    let stale = p.on(Input::Progress(progress("j9", JobState::Downloaded, None)));
    assert!(!stale.iter().any(|a| matches!(a, Action::Persist(_))), "not the job in hand: {stale:?}");
}
