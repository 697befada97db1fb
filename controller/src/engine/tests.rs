//! The engine, driven without sockets, files or sleeps.

use std::collections::BTreeSet;

use bindwave_proto::wire::{Command, DeviceId, JobState, Presence, Report};
use bindwave_proto::HardwareLevel;

use super::plan::Prediction;
use super::testkit::*;
use super::*;
use crate::model::{Cause, GateAction, Gates, Job, JobPhase, Millis, Outcome, RolloutId, RolloutState, Stage};

/// What the service does for an effect, in the order it does them: writes every record, then sends every
/// command.
#[derive(Debug)]
enum Effect {
    Put,
    Send { command: Command },
}

/// The effects in the order the service carries them out.
fn in_order(fx: Effects) -> Vec<Effect> {
    let puts = fx.persist.iter().map(|_| Effect::Put);
    puts.chain(fx.publish.into_iter().map(|(_, command)| Effect::Send { command })).collect()
}

/// Update commands in the effects: (device, job id).
fn updates(fx: &Effects) -> Vec<(String, String)> {
    fx.publish
        .iter()
        .filter_map(|(device, command)| match command {
            Command::Update(c) => Some((device.to_string(), c.job_id.clone())),
            _ => None,
        })
        .collect()
}

fn acks(fx: &Effects) -> usize {
    fx.publish.iter().filter(|(_, command)| matches!(command, Command::Ack { .. })).count()
}

fn puts(fx: &Effects) -> usize {
    fx.persist.len()
}

fn state(e: &Engine, r: &RolloutId) -> RolloutState {
    e.rollout(r).unwrap().state.clone()
}

/// Every device that is in flight answers with `f(job)`; returns the effects.
fn answer_all(e: &mut Engine, r: &RolloutId, now: Millis, f: impl Fn(&str) -> Report) -> Effects {
    let in_flight: Vec<(DeviceId, String)> =
        e.jobs_of(r).filter(|j| j.phase.in_flight()).map(|j| (j.device.clone(), j.id().to_string())).collect();
    let mut fx = Effects::default();
    for (d, job) in in_flight {
        fx.extend(e.handle(Input::Report(d, f(&job)), now).unwrap().1);
    }
    fx
}

#[test]
fn start_commands_only_the_first_wave_and_records_first() {
    let mut e = fleet(20);
    let r = create(&mut e, spec(&["10%", "50%", "100%"], Gates::default()));
    let waves: Vec<usize> = e.rollout(&r).unwrap().waves.iter().map(|w| w.devices).collect();
    assert_eq!(waves, [2, 8, 10]);
    let fx = op(&mut e, &r, Action::Start, 2).unwrap();
    let sent = updates(&fx);
    assert_eq!(sent.len(), 2);
    let fx = in_order(fx);
    let first_send = fx.iter().position(|f| matches!(f, Effect::Send { .. })).unwrap();
    assert!(fx[first_send..].iter().all(|f| matches!(f, Effect::Send { .. })), "records come before commands");
    assert_eq!(state(&e, &r), RolloutState::Active { wave: 0, stage: Stage::Updating });
    assert!(matches!(op(&mut e, &r, Action::Start, 3), Err(EngineError::InvalidAction { .. })));
}

#[test]
fn waves_advance_when_their_gates_pass_until_finished() {
    let mut e = fleet(20);
    let r = create(&mut e, spec(&["10%", "50%", "100%"], Gates::default()));
    op(&mut e, &r, Action::Start, 2).unwrap();
    let fx = answer_all(&mut e, &r, 3, succeeded);
    assert_eq!(updates(&fx).len(), 8, "wave 2 starts at once (no soak)");
    assert_eq!(state(&e, &r), RolloutState::Active { wave: 1, stage: Stage::Updating });
    let fx = answer_all(&mut e, &r, 4, succeeded);
    assert_eq!(updates(&fx).len(), 10);
    answer_all(&mut e, &r, 5, succeeded);
    assert_eq!(state(&e, &r), RolloutState::Finished);
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 20);
    let actions: Vec<String> = e.audit(Some(&r)).map(|a| a.action.clone()).collect();
    // Each wave's start and pass, as webhooks announce them.
    assert_eq!(actions, ["create", "start", "wave", "pass", "wave", "pass", "wave", "pass", "finish"]);
}

#[test]
fn the_canary_covers_every_cohort_and_the_draw_is_reproducible() {
    let mut e = Engine::new("http://x");
    for i in 0..60 {
        let (level, version) =
            [(2, "V3 R1.0.0"), (3, "V3 R1.0.0"), (3, "V3 R2.0.0"), (4, "V3 R2.0.0"), (5, "V3 R9.0.0")][i % 5];
        e.handle(Input::Hello(hello(&format!("d{i:03}"), level, version)), 0).unwrap();
    }
    e.handle(Input::AddImage(image()), 0).unwrap();
    let plan = e.plan(&spec(&["1%", "50%"], Gates::default()), 0).unwrap();
    assert_eq!(plan.cohorts, 5);
    let sizes: Vec<usize> = plan.waves.iter().map(|w| w.devices.len()).collect();
    assert_eq!(sizes, [5, 25, 30], "1% of 60 is one device, but five cohorts; the rest forms a last wave");
    let cohort_of = |d: &DeviceId| {
        let h = e.devices.get(d).unwrap().hello.clone().unwrap();
        (h.hardware_level, h.software_version)
    };
    let canary: BTreeSet<_> = plan.waves[0].devices.iter().map(cohort_of).collect();
    assert_eq!(canary.len(), 5);
    // The same seed draws the same waves; another seed another draw.
    assert_eq!(e.plan(&spec(&["1%", "50%"], Gates::default()), 0).unwrap(), plan);
    let mut other = spec(&["1%", "50%"], Gates::default());
    other.seed = Some(2);
    assert_ne!(e.plan(&other, 0).unwrap().waves[1].devices, plan.waves[1].devices);
    // Every device is in exactly one wave.
    let all: BTreeSet<_> = plan.waves.iter().flat_map(|w| w.devices.iter()).collect();
    assert_eq!(all.len(), 60);
    // The prediction applies the agents' rule: the image is for level 3 only.
    let p: Prediction = plan.waves.iter().fold(Prediction::default(), |mut acc, w| {
        acc.install += w.prediction.install;
        acc.rejected_hardware += w.prediction.rejected_hardware;
        acc
    });
    assert_eq!((p.install, p.rejected_hardware), (24, 36));
}

/// The plan decides the rule once per (hardware level, minimum version) pair: its counts and reasons are those
/// of the rule applied to each device, for an image with hardware levels and one without, with and without
/// Override, and devices that never said hello count as unknown.
#[test]
fn a_plans_prediction_is_the_rule_applied_to_each_device() {
    let mut e = Engine::new("http://x");
    for i in 0..90 {
        let mut h = hello(&format!("d{i:03}"), [2, 3, 4][i % 3], "V3 R2.0.0");
        h.minimum_software_version = ["V3 R1.0.0", "V3 R4.0.0", "V3 R9.0.0", "V3 R3.18.0"][i % 4].parse().unwrap();
        e.handle(Input::Hello(h), 0).unwrap();
    }
    e.devices.insert(
        id("silent"),
        Device { id: id("silent"), hello: None, online: false, last_seen: 0, changes: Vec::new() },
    );
    let with_levels = image();
    let mut without_levels = image();
    without_levels.sha256 = ImageId::parse(&"ef".repeat(32)).unwrap();
    without_levels.hardware_levels = None;
    for img in [with_levels, without_levels] {
        e.handle(Input::AddImage(img.clone()), 0).unwrap();
        for override_compat in [false, true] {
            let mut s = spec(&["10%", "50%"], Gates::default());
            s.image = img.sha256.to_string();
            s.override_compat = override_compat;
            let plan = e.plan(&s, 7).unwrap();
            for wave in &plan.waves {
                let mut expected = Prediction::default();
                for d in &wave.devices {
                    match e.predict(&img, d, override_compat) {
                        None => expected.unknown += 1,
                        Some(bindwave_proto::compat::Decision::Proceed { overridden, .. }) => match overridden {
                            None => expected.install += 1,
                            Some(_) => expected.install_with_override += 1,
                        },
                        Some(bindwave_proto::compat::Decision::Reject { rejection, .. }) => {
                            match rejection {
                                bindwave_proto::compat::Rejection::HardwareLevelIncompatible { .. } => {
                                    expected.rejected_hardware += 1
                                }
                                bindwave_proto::compat::Rejection::SoftwareLevelBelowMinimum { .. } => {
                                    expected.rejected_software += 1
                                }
                            }
                            *expected.reasons.entry(rejection.to_string()).or_default() += 1;
                        }
                    }
                }
                assert_eq!(
                    wave.prediction, expected,
                    "image levels {:?}, override {override_compat}",
                    img.hardware_levels
                );
            }
            let unknown: usize = plan.waves.iter().map(|w| w.prediction.unknown).sum();
            assert_eq!(unknown, 1);
        }
    }
}

#[test]
fn counts_and_duplicate_wave_sizes() {
    let e = fleet(10);
    let plan = e.plan(&spec(&["3", "3", "5", "all"], Gates::default()), 0).unwrap();
    let sizes: Vec<usize> = plan.waves.iter().map(|w| w.devices.len()).collect();
    assert_eq!(sizes, [3, 2, 5], "a wave that adds nobody is dropped");
}

#[test]
fn bad_rollouts_are_refused() {
    let mut e = fleet(3);
    let mut s = spec(&["100%"], Gates::default());
    s.image = "abab".into();
    assert!(matches!(e.plan(&s, 0), Err(EngineError::UnknownImage(_))));
    let mut s = spec(&["100%"], Gates::default());
    s.targets.devices = vec![id("ghost")];
    assert!(matches!(e.plan(&s, 0), Err(EngineError::UnknownDevice(_))));
    let mut s = spec(&["100%"], Gates::default());
    s.targets.hardware_levels = vec![HardwareLevel(9)];
    assert!(matches!(e.plan(&s, 0), Err(EngineError::EmptyRollout)));
    let s = spec(&["100%"], Gates { success_ratio: 1.5, ..Gates::default() });
    assert!(matches!(e.plan(&s, 0), Err(EngineError::BadRequest(m)) if m.contains("success_ratio")));
    assert!(matches!(op(&mut e, &RolloutId::from(9), Action::Start, 0), Err(EngineError::UnknownRollout(_))));
}

#[test]
fn the_failure_threshold_pauses_and_nothing_more_is_sent() {
    let mut e = fleet(40);
    let gates = Gates { failure_ratio: 0.2, failure_min_finished: 4, ..Gates::default() };
    let r = create(&mut e, spec(&["25%", "100%"], gates));
    op(&mut e, &r, Action::Start, 2).unwrap();
    let in_flight: Vec<(DeviceId, String)> =
        e.jobs_of(&r).filter(|j| j.phase.in_flight()).map(|j| (j.device.clone(), j.id().to_string())).collect();
    assert_eq!(in_flight.len(), 10);
    // Three failures: below the minimum of four finished, nothing trips.
    for (d, j) in &in_flight[..3] {
        e.handle(Input::Report(d.clone(), failed(j)), 3).unwrap();
    }
    assert!(matches!(state(&e, &r), RolloutState::Active { .. }));
    let (_, fx) = e.handle(Input::Report(in_flight[3].0.clone(), failed(&in_flight[3].1)), 4).unwrap();
    assert!(matches!(
        state(&e, &r),
        RolloutState::Paused { wave: 0, cause: Cause::FailureThreshold { failed: 4, finished: 4, .. }, .. }
    ));
    assert!(updates(&fx).is_empty());
    // In-flight devices finish and are recorded; still nothing new is sent.
    let fx = answer_all(&mut e, &r, 5, succeeded);
    assert!(updates(&fx).is_empty());
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 6);
    assert_eq!(e.tally(&r).get(Outcome::Pending), 30);
    let last = e.audit(Some(&r)).last().unwrap();
    assert_eq!((last.actor.as_str(), last.action.as_str()), ("bindwave", "pause"));
    // Resuming accepts the failures so far; the wave has 6/10 succeeded, below 95%: the operator's resume
    // of a threshold pause does not skip the success gate, so it pauses again on that.
    op(&mut e, &r, Action::Resume, 6).unwrap();
    assert!(matches!(
        state(&e, &r),
        RolloutState::Paused { cause: Cause::SuccessGate { succeeded: 6, eligible: 10, .. }, .. }
    ));
    // A second resume lets the wave through.
    let fx = op(&mut e, &r, Action::Resume, 7).unwrap();
    assert_eq!(updates(&fx).len(), 30);
}

#[test]
fn the_failure_threshold_can_abort_and_cancels_the_rest() {
    let mut e = fleet(20);
    let gates =
        Gates { failure_ratio: 0.0, failure_min_finished: 1, on_failure: GateAction::Abort, ..Gates::default() };
    let r = create(&mut e, spec(&["20%", "100%"], gates));
    op(&mut e, &r, Action::Start, 2).unwrap();
    let jobs: Vec<(DeviceId, String)> =
        e.jobs_of(&r).filter(|j| j.phase.in_flight()).map(|j| (j.device.clone(), j.id().to_string())).collect();
    e.handle(Input::Report(jobs[0].0.clone(), failed(&jobs[0].1)), 3).unwrap();
    assert!(matches!(state(&e, &r), RolloutState::Aborted { cause: Cause::FailureThreshold { .. } }));
    assert_eq!(e.tally(&r).get(Outcome::Cancelled), 16);
    // A late report from an in-flight device is still recorded.
    e.handle(Input::Report(jobs[1].0.clone(), succeeded(&jobs[1].1)), 4).unwrap();
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 1);
    assert!(matches!(op(&mut e, &r, Action::Resume, 5), Err(EngineError::InvalidAction { .. })));
}

#[test]
fn a_wave_below_its_success_ratio_waits_for_an_operator() {
    let mut e = fleet(10);
    // A failure threshold that never trips, to see the success gate alone.
    let gates = Gates { success_ratio: 0.9, failure_ratio: 1.0, ..Gates::default() };
    let r = create(&mut e, spec(&["50%", "100%"], gates));
    op(&mut e, &r, Action::Start, 2).unwrap();
    let jobs: Vec<String> = e.jobs_of(&r).filter(|j| j.phase.in_flight()).map(|j| j.id().to_string()).collect();
    answer_all(&mut e, &r, 3, |j| if *j == jobs[0] { failed(j) } else { succeeded(j) });
    assert!(matches!(
        state(&e, &r),
        RolloutState::Paused { wave: 0, cause: Cause::SuccessGate { succeeded: 4, eligible: 5, .. }, .. }
    ));
    let fx = op(&mut e, &r, Action::Resume, 4).unwrap();
    assert_eq!(updates(&fx).len(), 5);
    assert!(e.rollout(&r).unwrap().waves[0].passed_at.is_some());
}

#[test]
fn rejections_are_counted_apart_and_never_retried() {
    let mut e = fleet(10);
    let r = create(
        &mut e,
        spec(&["50%", "100%"], Gates { failure_min_finished: 1, failure_ratio: 0.0, ..Gates::default() }),
    );
    op(&mut e, &r, Action::Start, 2).unwrap();
    // Every wave-1 device rejects: no failure, success ratio over zero eligible devices passes.
    let fx = answer_all(&mut e, &r, 3, rejected_hw);
    assert_eq!(updates(&fx).len(), 5, "rejections do not stop the rollout by default");
    assert_eq!(e.tally(&r).get(Outcome::RejectedHardware), 5);
    answer_all(&mut e, &r, 4, failed);
    // The failure threshold (0%) pauses; retry sends the failed ones again, never the rejected.
    assert!(matches!(state(&e, &r), RolloutState::Paused { .. }));
    let fx = op(&mut e, &r, Action::Retry, 5).unwrap();
    let again = updates(&fx);
    assert!(again.is_empty(), "a paused rollout sends nothing, retried devices wait: {again:?}");
    let fx = op(&mut e, &r, Action::Resume, 6).unwrap();
    let again = updates(&fx);
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|(_, job)| job.ends_with(".2")), "{again:?}");
}

#[test]
fn a_rejection_threshold_can_stop_the_rollout() {
    let mut e = fleet(10);
    let gates = Gates {
        rejection_ratio: Some(0.5),
        rejection_min_finished: 2,
        on_rejection: GateAction::Abort,
        ..Gates::default()
    };
    let r = create(&mut e, spec(&["50%", "100%"], gates));
    op(&mut e, &r, Action::Start, 2).unwrap();
    answer_all(&mut e, &r, 3, rejected_hw);
    assert!(matches!(state(&e, &r), RolloutState::Aborted { cause: Cause::RejectionThreshold { .. } }));
}

#[test]
fn soak_time_holds_the_next_wave() {
    let mut e = fleet(10);
    let r = create(&mut e, spec(&["50%", "100%"], Gates { soak_secs: 60, ..Gates::default() }));
    op(&mut e, &r, Action::Start, 1_000).unwrap();
    answer_all(&mut e, &r, 2_000, succeeded);
    assert_eq!(state(&e, &r), RolloutState::Active { wave: 0, stage: Stage::Soaking { until: 62_000 } });
    assert_eq!(e.next_deadline(), Some(62_000));
    assert!(updates(&e.handle(Input::Tick, 61_999).unwrap().1).is_empty());
    assert_eq!(updates(&e.handle(Input::Tick, 62_000).unwrap().1).len(), 5);
}

#[test]
fn silent_devices_time_out_and_a_late_report_corrects_them() {
    let mut e = fleet(4);
    let gates = Gates { device_timeout_secs: 10, failure_ratio: 1.0, success_ratio: 0.0, ..Gates::default() };
    let r = create(&mut e, spec(&["100%"], gates));
    let fx = op(&mut e, &r, Action::Start, 1_000).unwrap();
    // Each command carries the time limit, so the phone gives up when the controller stops waiting.
    let limits: Vec<_> = in_order(fx)
        .into_iter()
        .filter_map(|f| match f {
            Effect::Send { command: Command::Update(c), .. } => Some(c.timeout_secs),
            _ => None,
        })
        .collect();
    assert_eq!(limits, vec![Some(10); 4]);
    assert_eq!(e.next_deadline(), Some(11_000));
    e.handle(Input::Tick, 10_999).unwrap();
    assert_eq!(e.tally(&r).get(Outcome::TimedOut), 0);
    e.handle(Input::Tick, 11_000).unwrap();
    assert_eq!(e.tally(&r).get(Outcome::TimedOut), 4);
    assert_eq!(state(&e, &r), RolloutState::Finished, "timed out is an outcome: the wave ends");
    // A device that was only slow: its success replaces the timeout, so status matches what it runs.
    let j = e.jobs_of(&r).next().unwrap().clone();
    let (_, fx) = e.handle(Input::Report(j.device.clone(), succeeded(&j.id().to_string())), 12_000).unwrap();
    assert_eq!(acks(&fx), 1);
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 1);
    assert_eq!(e.tally(&r).get(Outcome::TimedOut), 3);
    // A late progress report does not undo the timeout.
    let j = e.jobs_of(&r).find(|j| j.phase == JobPhase::TimedOut).unwrap().clone();
    e.handle(Input::Report(j.device.clone(), report(&j.id().to_string(), JobState::Downloading)), 13_000).unwrap();
    assert_eq!(e.tally(&r).get(Outcome::TimedOut), 3);
}

#[test]
fn at_most_max_concurrent_devices_update_at_once() {
    let mut e = fleet(10);
    let r = create(&mut e, spec(&["100%"], Gates { max_concurrent: Some(3), ..Gates::default() }));
    let fx = op(&mut e, &r, Action::Start, 1).unwrap();
    assert_eq!(updates(&fx).len(), 3);
    let j = e.jobs_of(&r).find(|j| j.phase.in_flight()).unwrap().clone();
    let (_, fx) = e.handle(Input::Report(j.device.clone(), succeeded(&j.id().to_string())), 2).unwrap();
    assert_eq!(updates(&fx).len(), 1, "one finished, one more starts");
    assert_eq!(e.tally(&r).get(Outcome::InProgress), 3);
}

#[test]
fn approval_holds_each_wave_until_an_operator_approves() {
    let mut e = fleet(10);
    let r = create(&mut e, spec(&["50%", "100%"], Gates { approval: true, ..Gates::default() }));
    assert!(updates(&op(&mut e, &r, Action::Start, 1).unwrap()).is_empty());
    assert_eq!(state(&e, &r), RolloutState::Active { wave: 0, stage: Stage::AwaitingApproval });
    assert_eq!(updates(&op(&mut e, &r, Action::Approve, 2).unwrap()).len(), 5);
    assert_eq!(e.rollout(&r).unwrap().waves[0].approved_by.as_deref(), Some("alice"));
    answer_all(&mut e, &r, 3, succeeded);
    assert_eq!(state(&e, &r), RolloutState::Active { wave: 1, stage: Stage::AwaitingApproval });
    assert!(matches!(op(&mut e, &r, Action::Approve, 4), Ok(fx) if updates(&fx).len() == 5));
    assert!(matches!(op(&mut e, &r, Action::Approve, 5), Err(EngineError::InvalidAction { .. })));
}

#[test]
fn pause_resume_abort_by_an_operator_are_audited() {
    let mut e = fleet(10);
    let r = create(&mut e, spec(&["100%"], Gates { max_concurrent: Some(2), ..Gates::default() }));
    op(&mut e, &r, Action::Start, 1).unwrap();
    op(&mut e, &r, Action::Pause, 2).unwrap();
    let fx = answer_all(&mut e, &r, 3, succeeded);
    assert!(updates(&fx).is_empty(), "paused: finished devices free no slot for new ones");
    assert_eq!(updates(&op(&mut e, &r, Action::Resume, 4).unwrap()).len(), 2);
    op(&mut e, &r, Action::Abort, 5).unwrap();
    assert_eq!(e.tally(&r).get(Outcome::Cancelled), 6);
    let log: Vec<(String, String)> = e.audit(Some(&r)).map(|a| (a.actor.clone(), a.action.clone())).collect();
    let who = |actor: &str, action: &str| (actor.to_string(), action.to_string());
    let expected = [
        who("alice", "create"),
        who("alice", "start"),
        who("bindwave", "wave"),
        who("alice", "pause"),
        who("alice", "resume"),
        who("alice", "abort"),
    ];
    assert_eq!(log, expected);
}

#[test]
fn the_emergency_stop_pauses_every_rollout_under_way() {
    let mut e = fleet(10);
    let r1 = create(&mut e, spec(&["100%"], Gates::default()));
    let r2 = create(&mut e, spec(&["100%"], Gates::default()));
    let _r3 = create(&mut e, spec(&["100%"], Gates::default()));
    op(&mut e, &r1, Action::Start, 1).unwrap();
    op(&mut e, &r2, Action::Start, 1).unwrap();
    let (reply, _) =
        e.handle(Input::EmergencyStop { actor: "bob".into(), reason: "boot loops".into(), abort: false }, 2).unwrap();
    assert_eq!(reply, Reply::Stopped(vec![r1, r2]));
    assert!(matches!(state(&e, &r1), RolloutState::Paused { cause: Cause::EmergencyStop { .. }, .. }));
    assert!(e.audit(None).any(|a| a.action == "emergency_stop" && a.actor == "bob"));
    // With abort, paused ones are aborted too.
    let (reply, _) = e.handle(Input::EmergencyStop { actor: "bob".into(), reason: "".into(), abort: true }, 3).unwrap();
    assert_eq!(reply, Reply::Stopped(vec![r1, r2]));
    assert!(matches!(state(&e, &r1), RolloutState::Aborted { .. }));
}

#[test]
fn final_reports_are_recorded_once_and_always_acknowledged() {
    let mut e = fleet(2);
    let r = create(&mut e, spec(&["100%"], Gates::default()));
    op(&mut e, &r, Action::Start, 1).unwrap();
    let j = e.jobs_of(&r).next().unwrap().clone();
    let (_, fx) = e.handle(Input::Report(j.device.clone(), succeeded(&j.id().to_string())), 2).unwrap();
    assert_eq!((puts(&fx), acks(&fx)), (1, 1));
    let (_, fx) = e.handle(Input::Report(j.device.clone(), succeeded(&j.id().to_string())), 3).unwrap();
    assert_eq!((puts(&fx), acks(&fx)), (0, 1), "a repeat changes nothing but is acknowledged again");
    let (_, fx) =
        e.handle(Input::Report(j.device.clone(), report(&j.id().to_string(), JobState::Downloading)), 4).unwrap();
    assert!(fx.is_empty(), "late progress does not reopen a job");
}

#[test]
fn out_of_order_and_misaddressed_reports_change_nothing() {
    let mut e = fleet(2);
    let r = create(&mut e, spec(&["100%"], Gates::default()));
    op(&mut e, &r, Action::Start, 1).unwrap();
    let jobs: Vec<Job> = e.jobs_of(&r).collect();
    let at = |p| Report { progress: Some(p), ..report(&jobs[0].id().to_string(), JobState::Downloading) };
    let progress = |e: &Engine| e.jobs_of(&r).find(|j| j.device == jobs[0].device).unwrap().phase.clone();
    // Progress is kept in memory and shown, never written: no record to persist.
    assert_eq!(puts(&e.handle(Input::Report(jobs[0].device.clone(), at(50)), 2).unwrap().1), 0);
    assert_eq!(progress(&e), JobPhase::Running { state: JobState::Downloading, progress: Some(50) });
    assert!(e.handle(Input::Report(jobs[0].device.clone(), at(40)), 3).unwrap().1.is_empty());
    assert_eq!(progress(&e), JobPhase::Running { state: JobState::Downloading, progress: Some(50) }, "older news");
    // Another device claims this job: refused, and acknowledged so that a confused device stops repeating.
    let (reply, fx) = e.handle(Input::Report(jobs[1].device.clone(), succeeded(&jobs[0].id().to_string())), 4).unwrap();
    assert_eq!((puts(&fx), acks(&fx)), (0, 1));
    assert!(matches!(reply, Reply::Refused(Refusal { what: Refused::OtherDevicesJob, .. })), "{reply:?}");
    // A job id that is nobody's.
    let (reply, _) = e.handle(Input::Report(jobs[1].device.clone(), succeeded("r9-d001")), 5).unwrap();
    assert!(matches!(reply, Reply::Refused(Refusal { what: Refused::UnknownJob, .. })), "{reply:?}");
    let (reply, _) = e.handle(Input::Report(jobs[1].device.clone(), succeeded("job-7")), 5).unwrap();
    assert!(matches!(reply, Reply::Refused(Refusal { what: Refused::UnknownJob, .. })), "{reply:?}");
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 0);
}

/// A forged final report for a job that was created but never sent is refused: no record, no count, no ack.
#[test]
fn a_report_for_a_job_never_sent_is_refused_and_counts_nothing() {
    let mut e = fleet(4);
    let r = create(&mut e, spec(&["50%", "100%"], Gates::default()));
    // Created, not started: every job is pending.
    let pending = e.jobs_of(&r).next().unwrap().clone();
    let (reply, fx) = e.handle(Input::Report(pending.device.clone(), succeeded(&pending.id().to_string())), 2).unwrap();
    assert!(matches!(reply, Reply::Refused(Refusal { what: Refused::JobNotSent, .. })), "{reply:?}");
    assert!(fx.is_empty(), "{fx:?}");
    // Started: the second wave's jobs are still unsent, and a progress report for one is refused too.
    op(&mut e, &r, Action::Start, 3).unwrap();
    let later = e.jobs_of(&r).find(|j| j.phase == JobPhase::Pending).unwrap().clone();
    for state in [JobState::Succeeded, JobState::Downloading] {
        let mut forged = succeeded(&later.id().to_string());
        forged.state = state;
        let (reply, fx) = e.handle(Input::Report(later.device.clone(), forged), 4).unwrap();
        assert!(matches!(reply, Reply::Refused(Refusal { what: Refused::JobNotSent, .. })), "{state}: {reply:?}");
        assert!(fx.is_empty(), "{fx:?}");
    }
    assert_eq!(e.jobs_of(&r).find(|j| j.device == later.device).unwrap().phase, JobPhase::Pending);
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 0);
}

/// A success counts only with the image's version running; anything else is a failure of its own reason.
#[test]
fn a_success_on_another_version_or_none_is_a_version_mismatch_failure() {
    let mut e = fleet(2);
    let r = create(&mut e, spec(&["100%"], Gates::default()));
    op(&mut e, &r, Action::Start, 1).unwrap();
    let jobs: Vec<Job> = e.jobs_of(&r).collect();
    let wrong = Report { running_version: Some("V3 R1.0.0".parse().unwrap()), ..succeeded(&jobs[0].id().to_string()) };
    let (_, fx) = e.handle(Input::Report(jobs[0].device.clone(), wrong), 2).unwrap();
    assert_eq!(acks(&fx), 1);
    let none = report(&jobs[1].id().to_string(), JobState::Succeeded);
    e.handle(Input::Report(jobs[1].device.clone(), none), 3).unwrap();
    assert_eq!((e.tally(&r).get(Outcome::Succeeded), e.tally(&r).get(Outcome::Failed)), (0, 2));
    let phases: Vec<JobPhase> = e.jobs_of(&r).map(|j| j.phase.clone()).collect();
    let expected: bindwave_proto::SoftwareVersion = "V3 R3.18.0".parse().unwrap();
    assert_eq!(
        phases[0],
        JobPhase::Failed {
            reason: bindwave_proto::wire::Reason::VersionMismatch {
                expected: expected.clone(),
                running: Some("V3 R1.0.0".parse().unwrap())
            },
            running_version: Some("V3 R1.0.0".parse().unwrap()),
        }
    );
    assert_eq!(
        phases[1],
        JobPhase::Failed {
            reason: bindwave_proto::wire::Reason::VersionMismatch { expected, running: None },
            running_version: None,
        }
    );
}

/// A hello may change a known device's hardware level only with the probe as its source.
#[test]
fn a_hardware_level_change_is_applied_only_from_the_probe() {
    let mut e = fleet(1);
    let level = |e: &Engine| e.devices().find(|d| d.id == id("d000")).unwrap().hello.as_ref().unwrap().hardware_level;
    let (reply, fx) = e.handle(Input::Hello(hello("d000", 5, "V3 R1.2.0")), 2).unwrap();
    assert!(matches!(reply, Reply::Refused(Refusal { what: Refused::HardwareLevelChange, .. })), "{reply:?}");
    assert_eq!(level(&e), HardwareLevel(3), "the stored level is kept");
    let version = &e.devices().find(|d| d.id == id("d000")).unwrap().hello.as_ref().unwrap().software_version;
    assert_eq!(version.to_string(), "V3 R1.2.0", "the rest of the hello is taken");
    assert_eq!(puts(&fx), 1);
    // The same level again is no change.
    assert_eq!(e.handle(Input::Hello(hello("d000", 3, "V3 R1.2.0")), 3).unwrap().0, Reply::None);
    let mut probed = hello("d000", 5, "V3 R1.2.0");
    probed.hardware_level_source = bindwave_proto::wire::LevelSource::Probe;
    let (reply, _) = e.handle(Input::Hello(probed), 4).unwrap();
    assert_eq!(reply, Reply::LevelChanged { device: id("d000"), from: HardwareLevel(3), to: HardwareLevel(5) });
    assert_eq!(level(&e), HardwareLevel(5));
    // A device seen for the first time has nothing to change.
    assert_eq!(e.handle(Input::Hello(hello("d999", 7, "V3 R1.0.0")), 5).unwrap().0, Reply::None);
}

#[test]
fn hello_resends_unfinished_work_and_following_rollouts_take_in_newcomers() {
    let mut e = fleet(4);
    let mut s = spec(&["50%", "100%"], Gates::default());
    s.targets.follow = true;
    let r = create(&mut e, s);
    op(&mut e, &r, Action::Start, 1).unwrap();
    let j = e.jobs_of(&r).find(|j| j.phase.in_flight()).unwrap().clone();
    let (_, fx) = e.handle(Input::Hello(hello(j.device.as_str(), 3, "V3 R1.0.0")), 2).unwrap();
    assert_eq!(updates(&fx), vec![(j.device.to_string(), j.id().to_string())]);
    // A new device joins the last wave (not yet started): it waits its turn.
    let (_, fx) = e.handle(Input::Hello(hello("new-1", 3, "V3 R1.0.0")), 3).unwrap();
    assert!(updates(&fx).is_empty());
    assert_eq!(e.rollout(&r).unwrap().waves[1].devices, 3);
    answer_all(&mut e, &r, 4, succeeded);
    assert!(e.jobs_of(&r).any(|j| j.device == id("new-1") && j.phase.in_flight()));
}

#[test]
fn restoring_the_records_rebuilds_the_same_state() {
    let mut e = fleet(10);
    let mut records = Vec::new();
    let keep = |fx: Effects, records: &mut Vec<Record>| records.extend(fx.persist);
    for d in e.devices.values() {
        records.push(Record::Device(Box::new(d.clone())));
    }
    records.push(Record::Image(image()));
    let (_, fx) = e
        .handle(
            Input::CreateRollout {
                spec: Box::new(spec(&["30%", "100%"], Gates { max_concurrent: Some(2), ..Gates::default() })),
                seed: 0,
                actor: "a".into(),
            },
            1,
        )
        .unwrap();
    keep(fx, &mut records);
    let r1 = RolloutId::from(1);
    keep(op(&mut e, &r1, Action::Start, 2).unwrap(), &mut records);
    let j = e.jobs_of(&r1).find(|j| j.phase.in_flight()).unwrap().clone();
    keep(e.handle(Input::Report(j.device.clone(), succeeded(&j.id().to_string())), 3).unwrap().1, &mut records);

    let mut restored = Engine::new("http://ctl:8080/");
    for r in records {
        restored.restore(r);
    }
    let owed = updates(&restored.resume(3));
    assert_eq!(restored.tally(&r1), e.tally(&r1));
    assert_eq!(restored.rollout(&r1), e.rollout(&r1));
    assert_eq!(restored.audit(None).count(), e.audit(None).count());
    // The two in flight are owed again, and nothing else.
    let mut in_flight: Vec<(String, String)> =
        e.jobs_of(&r1).filter(|j| j.phase.in_flight()).map(|j| (j.device.to_string(), j.id().to_string())).collect();
    in_flight.sort();
    let mut owed_sorted = owed.clone();
    owed_sorted.sort();
    assert_eq!(owed_sorted, in_flight);
    // Both engines go on identically from here.
    let a = answer_all(&mut e, &r1, 4, succeeded);
    let b = answer_all(&mut restored, &r1, 4, succeeded);
    assert_eq!(updates(&a), updates(&b));
    // Numbering continues.
    assert_eq!(create(&mut restored, spec(&["100%"], Gates::default())), RolloutId::from(2));
}

/// A device stored online comes back offline: online state is re-established by the broker after a restart
/// (a hello or a presence), never restored from the store, where a phone that died with its broker would stay
/// online for good.
#[test]
fn a_restart_forgets_who_was_online_until_each_device_says_so_again() {
    let e = fleet(3);
    assert!(e.devices().all(|d| d.online));
    let records: Vec<Record> = e.devices().map(|d| Record::Device(Box::new(d.clone()))).collect();
    let mut restored = replay(&records);
    assert!(restored.devices().all(|d| !d.online), "restored online");
    let first = restored.devices().next().unwrap().id.clone();
    restored.handle(Input::Hello(hello(first.as_str(), 3, "V3 R1.0.0")), 10).unwrap();
    let online: Vec<_> = restored.devices().filter(|d| d.online).map(|d| d.id.clone()).collect();
    assert_eq!(online, vec![first.clone()]);
    let second = restored.devices().find(|d| d.id != first).unwrap().id.clone();
    restored.handle(Input::Presence(second.clone(), Presence { online: true }), 11).unwrap();
    assert_eq!(restored.devices().filter(|d| d.online).count(), 2);
}

/// An engine restored from `records`, as at start-up.
fn replay(records: &[Record]) -> Engine {
    let mut restored = Engine::new("http://ctl:8080/");
    for r in records.iter().cloned() {
        restored.restore(r);
    }
    restored.resume(0);
    restored
}

/// Creating a rollout writes its members a few thousand to a record, not a job per device: a member's job is
/// implied until its first command writes it. A restore from those records, at every step (created, started,
/// an outcome, a device joining, aborted), shows the same jobs, counts and queues as the engine that wrote them.
#[test]
fn a_rollouts_members_are_written_in_records_of_thousands_and_their_jobs_only_once_commanded() {
    let n = crate::model::MEMBERS_PER_RECORD + 5;
    let mut e = fleet(n);
    let mut records: Vec<Record> = e.devices.values().map(|d| Record::Device(Box::new(d.clone()))).collect();
    records.push(Record::Image(image()));
    let mut targets = spec(&["1%", "100%"], Gates { max_concurrent: Some(3), ..Gates::default() });
    targets.targets.follow = true;
    let (_, fx) = e.handle(Input::CreateRollout { spec: Box::new(targets), seed: 7, actor: "a".into() }, 1).unwrap();
    let members: usize = fx.persist.iter().map(|r| if let Record::Members(m) = r { m.devices.len() } else { 0 }).sum();
    let written = fx.persist.iter().filter(|r| matches!(r, Record::Job(_))).count();
    assert_eq!((members, written), (n, 0), "members in records, and no job record at create");
    assert!(fx.persist.len() < 10, "{} records for {n} devices", fx.persist.len());
    records.extend(fx.persist);
    let r = RolloutId::from(1);
    let same = |e: &Engine, records: &[Record], step: &str| {
        let restored = replay(records);
        assert_eq!(restored.jobs_of(&r).collect::<Vec<_>>(), e.jobs_of(&r).collect::<Vec<_>>(), "{step}");
        assert_eq!(restored.wave_tallies(&r), e.wave_tallies(&r), "{step}");
        let queues = |e: &Engine| e.rollouts[&r].queues.clone();
        assert_eq!(queues(&restored), queues(e), "{step}");
        assert_eq!(restored.rollouts[&r].next_order(), e.rollouts[&r].next_order(), "{step}");
        assert_eq!(restored.rollouts[&r].by_order, e.rollouts[&r].by_order, "{step}");
        // Pages of jobs follow one another in plan order, and together are every job once.
        let (mut paged, mut after) = (Vec::new(), None);
        loop {
            let (page, next) = e.jobs_page(&r, after, 1_000);
            assert!(page.len() <= 1_000);
            paged.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut all: Vec<Job> = e.jobs_of(&r).collect();
        all.sort_by_key(|j| j.order);
        assert_eq!(paged, all, "{step}");
    };
    same(&e, &records, "created");
    assert_eq!(e.tally(&r).get(Outcome::Pending), n);

    // Started: the three commanded have a job record each, and nobody else.
    let fx = op(&mut e, &r, Action::Start, 2).unwrap();
    let sent: Vec<&Job> =
        fx.persist.iter().filter_map(|r| if let Record::Job(j) = r { Some(j) } else { None }).collect();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|j| j.phase == JobPhase::Sent && j.attempt == 1), "{sent:?}");
    records.extend(fx.persist);
    same(&e, &records, "started");

    let j = e.jobs_of(&r).find(|j| j.phase.in_flight()).unwrap();
    records.extend(e.handle(Input::Report(j.device.clone(), succeeded(&j.id().to_string())), 3).unwrap().1.persist);
    same(&e, &records, "an outcome");

    // A newcomer joins the last wave after every planned member.
    let (_, fx) = e.handle(Input::Hello(hello("new-1", 3, "V3 R1.0.0")), 4).unwrap();
    records.extend(fx.persist);
    let joined = e.jobs_of(&r).find(|j| j.device == id("new-1")).unwrap();
    assert_eq!((joined.wave, joined.order, joined.phase.clone()), (1, n as u32, JobPhase::Pending));
    same(&e, &records, "joined");

    // Aborted: the never-commanded are cancelled by the abort itself, with no record each.
    let never = e.jobs_of(&r).filter(|j| j.sent_at.is_none()).count();
    assert!(never > n - 10, "{never}");
    let fx = op(&mut e, &r, Action::Abort, 5).unwrap();
    let cancelled = fx.persist.iter().filter(|r| matches!(r, Record::Job(j) if j.phase == JobPhase::Cancelled)).count();
    assert_eq!(cancelled, 1, "only the newcomer's written job: {:?}", fx.persist.len());
    records.extend(fx.persist);
    assert_eq!(e.tally(&r).get(Outcome::Cancelled), never);
    assert!(e.jobs_of(&r).filter(|j| j.sent_at.is_none()).all(|j| j.phase == JobPhase::Cancelled && j.updated_at == 5));
    same(&e, &records, "aborted");
}

/// The blast radius: with an image that fails on every device, the devices that ever receive it are at most
/// wave 1 plus those already in flight when the gate trips (wave 1 itself, here), whatever the fleet, waves,
/// thresholds and concurrency.
#[test]
fn a_bad_image_never_gets_past_its_first_wave() {
    for n in [5, 17, 100, 333] {
        for waves in [&["1%", "10%", "100%"][..], &["5", "50%", "all"], &["30%", "100%"]] {
            for (ratio, min) in [(0.0, 1), (0.1, 3), (0.5, 10)] {
                for max in [None, Some(2)] {
                    let mut e = fleet(n);
                    let gates = Gates {
                        failure_ratio: ratio,
                        failure_min_finished: min,
                        max_concurrent: max,
                        ..Gates::default()
                    };
                    let r = create(&mut e, spec(waves, gates));
                    let wave1 = e.rollout(&r).unwrap().waves[0].devices;
                    op(&mut e, &r, Action::Start, 1).unwrap();
                    let mut now = 2;
                    // Devices fail one by one, in any order, until nothing is in flight.
                    loop {
                        let next = e.jobs_of(&r).find(|j| j.phase.in_flight());
                        let Some(j) = next else { break };
                        e.handle(Input::Report(j.device.clone(), failed(&j.id().to_string())), now).unwrap();
                        now += 1;
                        e.handle(Input::Tick, now).unwrap();
                    }
                    let reached = e.jobs_of(&r).filter(|j| j.sent_at.is_some()).count();
                    assert!(
                        reached <= wave1,
                        "n={n} waves={waves:?} ratio={ratio} min={min} max={max:?}: {reached} > wave 1 ({wave1})"
                    );
                    assert!(matches!(state(&e, &r), RolloutState::Paused { .. }), "{:?}", state(&e, &r));
                }
            }
        }
    }
}

#[test]
fn a_retry_after_the_last_wave_reopens_the_rollout_until_the_retried_devices_finish() {
    let mut e = fleet(10);
    let r =
        create(&mut e, spec(&["50%", "100%"], Gates { success_ratio: 0.0, failure_ratio: 1.0, ..Gates::default() }));
    op(&mut e, &r, Action::Start, 1).unwrap();
    let first = e.jobs_of(&r).find(|j| j.phase.in_flight()).unwrap().clone();
    e.handle(Input::Report(first.device.clone(), failed(&first.id().to_string())), 2).unwrap();
    answer_all(&mut e, &r, 3, succeeded);
    answer_all(&mut e, &r, 4, succeeded);
    assert_eq!(state(&e, &r), RolloutState::Finished);
    let fx = op(&mut e, &r, Action::Retry, 5).unwrap();
    assert_eq!(updates(&fx), vec![(first.device.to_string(), format!("{}.2", first.id()))]);
    assert!(
        matches!(state(&e, &r), RolloutState::Active { wave: 1, .. }),
        "a wave-1 device is retried: not finished yet"
    );
    // The old attempt's outcome, repeated, changes nothing.
    e.handle(Input::Report(first.device.clone(), failed(&first.id().to_string())), 6).unwrap();
    assert!(matches!(state(&e, &r), RolloutState::Active { .. }));
    answer_all(&mut e, &r, 7, succeeded);
    assert_eq!(state(&e, &r), RolloutState::Finished);
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 10);
}

/// A device that beats and falls silent for three heartbeats is taken offline (its last will lost); one that
/// keeps beating, by presence or report, stays online; one that sends no heartbeat follows its will alone.
#[test]
fn a_device_silent_for_three_heartbeats_goes_offline() {
    let mut e = Engine::new("http://ctl:8080/");
    let beating = |name: &str| Hello { heartbeat_secs: Some(10), ..hello(name, 3, "V3 R1.0.0") };
    for h in [beating("quiet"), beating("alive"), hello("old-agent", 3, "V3 R1.0.0")] {
        e.handle(Input::Hello(h), 0).unwrap();
    }
    let online = |e: &Engine| e.devices().filter(|d| d.online).map(|d| d.id.to_string()).collect::<Vec<_>>();
    let mut written = Vec::new();
    for t in (5..=60).step_by(5) {
        let now = t * 1000;
        e.handle(Input::Presence(id("alive"), Presence { online: true }), now).unwrap();
        if e.next_deadline().is_some_and(|d| d <= now) {
            let (_, fx) = e.handle(Input::Tick, now).unwrap();
            written.extend(fx.persist.into_iter().filter_map(|r| match r {
                Record::Device(d) => Some((t, d.id.to_string(), d.online)),
                _ => None,
            }));
        }
        if t <= 30 {
            assert_eq!(online(&e), ["alive", "old-agent", "quiet"], "at {t} s");
        }
    }
    assert_eq!(online(&e), ["alive", "old-agent"]);
    assert_eq!(written, [(35, "quiet".to_string(), false)], "taken offline once, within a scan of its deadline");
    // It comes back with its hello.
    e.handle(Input::Hello(beating("quiet")), 61_000).unwrap();
    assert_eq!(online(&e), ["alive", "old-agent", "quiet"]);
}
