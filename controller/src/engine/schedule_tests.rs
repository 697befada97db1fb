//! The engine under a schedule: windows in the phones' time zones, rates and ramps, downloads that wait for
//! their install window, and cancels that reach the phones. Time is an argument, so days pass in a test.

use bindwave_proto::wire::{Command, JobState};

use super::testkit::*;
use super::*;
use crate::model::{Gates, Outcome, RolloutState, Schedule, Stage};
use crate::schedule::Window;

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;

/// Milliseconds of a UTC time written `2026-12-07T00:30:00Z` (a Monday).
fn t(s: &str) -> Millis {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis
}

fn windows(list: &[&str]) -> Vec<Window> {
    list.iter().map(|w| w.parse().unwrap()).collect()
}

/// Devices `d000..` in the given zones (`None`: the phone names none), the image, at `now`.
fn fleet_in(zones: &[Option<&str>], now: Millis) -> Engine {
    let mut e = Engine::new("http://ctl:8080/");
    for (i, zone) in zones.iter().enumerate() {
        let mut h = hello(&format!("d{i:03}"), 3, "V3 R1.0.0");
        h.timezone = zone.map(Into::into);
        e.handle(Input::Hello(h), now).unwrap();
    }
    e.handle(Input::AddImage(image()), now).unwrap();
    e
}

fn scheduled(schedule: Schedule, gates: Gates, timezone: Option<&str>) -> crate::model::RolloutSpec {
    crate::model::RolloutSpec { schedule, timezone: timezone.map(Into::into), ..spec(&["100%"], gates) }
}

fn create_at(e: &mut Engine, s: crate::model::RolloutSpec, now: Millis) -> RolloutId {
    match e.handle(Input::CreateRollout { spec: Box::new(s), seed: 0, actor: "alice".into() }, now).unwrap().0 {
        Reply::Rollout(r) => r.id,
        other => panic!("{other:?}"),
    }
}

fn commanded(fx: &Effects) -> Vec<String> {
    let mut d: Vec<String> =
        fx.publish.iter().filter(|(_, c)| matches!(c, Command::Update(_))).map(|(d, _)| d.to_string()).collect();
    d.sort();
    d
}

fn tick(e: &mut Engine, now: Millis) -> Effects {
    e.handle(Input::Tick, now).unwrap().1
}

/// Sites in several zones roll out in their own nights, and a phone whose window has not opened is neither
/// commanded nor timed out.
#[test]
fn each_phone_is_commanded_only_inside_its_own_window() {
    let start = t("2026-12-07T00:30:00Z");
    let zones = [Some("Europe/Berlin"), Some("Europe/Berlin"), Some("America/New_York"), None];
    let mut e = fleet_in(&zones, start);
    let schedule = Schedule { windows: windows(&["daily 01:00-05:00"]), ..Schedule::default() };
    // d002 times out below; the failure gate is left open so that the wave goes on.
    let gates = Gates { device_timeout_secs: 600, failure_ratio: 1.0, ..Gates::default() };
    let r = create_at(&mut e, scheduled(schedule, gates, Some("Asia/Tokyo")), start);
    let fx = op(&mut e, &r, Action::Start, start).unwrap();
    assert_eq!(commanded(&fx), ["d000", "d001"], "01:30 in Berlin; New York and Tokyo (d003's rollout zone) wait");
    // The commands carry Berlin's install windows from now: tonight's first, in Unix seconds.
    let Some((_, Command::Update(u))) = fx.publish.first() else { panic!("{fx:?}") };
    assert_eq!(u.install_windows[0].from, t("2026-12-07T00:00:00Z") / 1000);
    assert_eq!(u.install_windows[0].until, t("2026-12-07T04:00:00Z") / 1000);
    assert!(u.install_windows.len() >= 14, "two weeks of nights: {}", u.install_windows.len());
    answer_berlin(&mut e, &r, start + MINUTE);
    // Tokyo opens at 16:00Z, New York at 06:00Z: the core's timer is set to the first.
    assert_eq!(e.next_deadline(), Some(t("2026-12-07T06:00:00Z")));
    assert!(commanded(&tick(&mut e, t("2026-12-07T05:59:59Z"))).is_empty());
    assert_eq!(commanded(&tick(&mut e, t("2026-12-07T06:00:00Z"))), ["d002"]);
    // Nothing has timed out: d003 has had no window yet.
    let fx = tick(&mut e, t("2026-12-07T15:00:00Z"));
    assert_eq!(e.tally(&r).get(Outcome::TimedOut), 1, "d002 only, 10 minutes after its command: {fx:?}");
    assert_eq!(e.tally(&r).get(Outcome::Pending), 1);
    assert_eq!(commanded(&tick(&mut e, t("2026-12-07T16:00:00Z"))), ["d003"]);
}

fn answer_berlin(e: &mut Engine, r: &RolloutId, now: Millis) {
    for d in ["d000", "d001"] {
        let job = e.jobs_of(r).find(|j| j.device.as_str() == d).unwrap().id().to_string();
        e.handle(Input::Report(id(d), succeeded(&job)), now).unwrap();
    }
}

/// A window that never opens while the rollout runs (a weekend window, Monday to Friday): no command, no
/// timeout, no gate trips, and the wave stays open.
#[test]
fn a_window_that_has_not_opened_holds_the_wave_without_failing_anyone() {
    let monday = t("2026-12-07T08:00:00Z");
    let mut e = fleet_in(&[None, None, None], monday);
    let schedule = Schedule { windows: windows(&["Sat,Sun 00:00-24:00"]), ..Schedule::default() };
    let r = create_at(&mut e, scheduled(schedule, Gates { device_timeout_secs: 60, ..Gates::default() }, None), monday);
    assert!(commanded(&op(&mut e, &r, Action::Start, monday).unwrap()).is_empty());
    for hour in 0..(4 * 24) {
        assert!(commanded(&tick(&mut e, monday + hour * HOUR)).is_empty(), "hour {hour}");
    }
    assert_eq!(e.tally(&r).get(Outcome::Pending), 3);
    assert!(matches!(e.rollout(&r).unwrap().state, RolloutState::Active { wave: 0, stage: Stage::Updating }));
    assert_eq!(e.next_deadline(), Some(t("2026-12-12T00:00:00Z")), "Saturday");
    assert_eq!(commanded(&tick(&mut e, t("2026-12-12T00:00:00Z"))).len(), 3);
}

#[test]
fn commands_go_out_at_the_waves_rate() {
    let mut e = fleet(10);
    let schedule = Schedule { rate: Some("60/min".parse().unwrap()), ..Schedule::default() };
    let r = create(&mut e, scheduled(schedule, Gates::default(), None));
    let mut sent = Vec::new();
    let mut now = 1000;
    sent.extend(commanded(&op(&mut e, &r, Action::Start, now).unwrap()).into_iter().map(|d| (now, d)));
    while now < 20_000 {
        now += 250;
        sent.extend(commanded(&tick(&mut e, now)).into_iter().map(|d| (now, d)));
    }
    let at: Vec<Millis> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(at, (0..10).map(|i| 1000 + i * 1000).collect::<Vec<_>>(), "one a second");
}

#[test]
fn a_ramp_speeds_up_every_so_many_commands() {
    let mut e = fleet(7);
    let schedule =
        Schedule { ramp: Some("exponential:start=60/min,factor=2,every=2".parse().unwrap()), ..Schedule::default() };
    let r = create(&mut e, scheduled(schedule, Gates::default(), None));
    let mut at = Vec::new();
    let mut now = 0;
    if !commanded(&op(&mut e, &r, Action::Start, now).unwrap()).is_empty() {
        at.push(now);
    }
    while now < 10_000 {
        now += 50;
        at.extend(std::iter::repeat_n(now, commanded(&tick(&mut e, now)).len()));
    }
    // 1 s apart twice, then 0.5 s twice, then 0.25 s.
    assert_eq!(at, [0, 1000, 2000, 2500, 3000, 3250, 3500]);
}

/// Download by day, install by night: phones are commanded at once, report `downloaded`, free their place
/// in the concurrency limit, and their time limit counts from their window's opening.
#[test]
fn a_downloaded_phone_waits_for_its_install_window_without_timing_out() {
    let noon = t("2026-12-07T12:00:00Z");
    let mut e = fleet_in(&[None, None], noon);
    let schedule = Schedule { install_windows: windows(&["daily 22:00-05:00"]), ..Schedule::default() };
    let gates = Gates { device_timeout_secs: 1800, max_concurrent: Some(1), ..Gates::default() };
    let r = create_at(&mut e, scheduled(schedule, gates, None), noon);
    let fx = op(&mut e, &r, Action::Start, noon).unwrap();
    assert_eq!(commanded(&fx), ["d000"], "one at a time");
    let Some((_, Command::Update(u))) = fx.publish.first() else { panic!() };
    assert_eq!(u.install_windows[0].from, t("2026-12-07T22:00:00Z") / 1000);
    let job = e.jobs_of(&r).next().unwrap();
    assert_eq!(job.deadline, Some(t("2026-12-07T22:30:00Z")), "30 minutes from the window's opening");
    let (_, fx) = e
        .handle(Input::Report(id("d000"), report(&job.id().to_string(), JobState::Downloaded)), noon + MINUTE)
        .unwrap();
    assert!(fx.persist.iter().any(|r| matches!(r, Record::Job(j) if j.phase.outcome() == Outcome::Downloaded)));
    assert_eq!(commanded(&fx), ["d001"], "a downloaded phone holds no place in the concurrency limit");
    assert_eq!(e.tally(&r).get(Outcome::Downloaded), 1);
    assert!(tick(&mut e, t("2026-12-07T22:29:00Z")).persist.is_empty(), "no timeout before 22:30");
    e.handle(Input::Report(id("d000"), succeeded(&job.id().to_string())), t("2026-12-07T22:10:00Z")).unwrap();
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 1);
}

/// `rollout cancel`: the rollout is aborted and every commanded phone is told to stop; a phone that answers
/// `cancelled` is cancelled, one whose install had begun keeps its true outcome, and a hello brings the
/// cancel again, never the update.
#[test]
fn a_cancel_reaches_the_commanded_phones_and_their_answers_are_taken() {
    let mut e = fleet(4);
    let r = create(&mut e, spec(&["50%", "100%"], Gates::default()));
    op(&mut e, &r, Action::Start, 1).unwrap();
    let jobs: Vec<(DeviceId, String)> =
        e.jobs_of(&r).filter(|j| j.phase.in_flight()).map(|j| (j.device.clone(), j.id().to_string())).collect();
    assert_eq!(jobs.len(), 2);
    let fx = op(&mut e, &r, Action::Cancel, 2).unwrap();
    let cancels: Vec<&Command> = fx.publish.iter().map(|(_, c)| c).collect();
    assert!(cancels.iter().all(|c| matches!(c, Command::Cancel { .. })) && cancels.len() == 2, "{cancels:?}");
    assert!(matches!(e.rollout(&r).unwrap().state, RolloutState::Aborted { .. }));
    assert_eq!(e.tally(&r).get(Outcome::Cancelled), 2, "the second wave's, never commanded");
    // A hello while cancelling: the cancel again.
    let (_, fx) = e.handle(Input::Hello(hello(jobs[0].0.as_str(), 3, "V3 R1.0.0")), 3).unwrap();
    assert!(matches!(fx.publish.as_slice(), [(_, Command::Cancel { job_id })] if *job_id == jobs[0].1), "{fx:?}");
    let cancelled = bindwave_proto::wire::Report {
        running_version: Some("V3 R1.0.0".parse().unwrap()),
        ..report(&jobs[0].1, JobState::Cancelled)
    };
    e.handle(Input::Report(jobs[0].0.clone(), cancelled), 4).unwrap();
    e.handle(Input::Report(jobs[1].0.clone(), succeeded(&jobs[1].1)), 4).unwrap();
    assert_eq!(e.tally(&r).get(Outcome::Cancelled), 3);
    assert_eq!(e.tally(&r).get(Outcome::Succeeded), 1, "its install had begun: the true outcome");
    assert!(op(&mut e, &r, Action::Cancel, 5).is_ok(), "cancel again on an aborted rollout sends nothing new");
}

/// After a restart the lanes come back by zone and the wave's pace goes on from the commands it sent.
#[test]
fn a_restored_engine_keeps_its_lanes_and_deadlines() {
    let start = t("2026-12-07T00:30:00Z");
    let mut e = fleet_in(&[Some("Europe/Berlin"), Some("America/New_York")], start);
    let mut records = Vec::new();
    let schedule = Schedule {
        windows: windows(&["daily 01:00-05:00"]),
        install_windows: windows(&["daily 02:00-03:00"]),
        ..Schedule::default()
    };
    let (_, fx) = e
        .handle(
            Input::CreateRollout {
                spec: Box::new(scheduled(schedule, Gates::default(), None)),
                seed: 0,
                actor: "a".into(),
            },
            start,
        )
        .unwrap();
    records.extend(fx.persist);
    let r = RolloutId::from(1);
    records.extend(op(&mut e, &r, Action::Start, start).unwrap().persist);
    let mut restored = Engine::new("http://ctl:8080/");
    for h in e.devices() {
        restored.restore(Record::Device(Box::new(h.clone())));
    }
    restored.restore(Record::Image(image()));
    for rec in records {
        restored.restore(rec);
    }
    let owed = restored.resume(start + MINUTE);
    assert_eq!(commanded(&owed), ["d000"]);
    assert_eq!(restored.rollouts[&r].queues, e.rollouts[&r].queues);
    assert_eq!(restored.next_deadline(), e.next_deadline());
    let job = restored.jobs_of(&r).find(|j| j.device.as_str() == "d000").unwrap();
    assert_eq!(job.deadline, Some(t("2026-12-07T01:30:00Z")), "30 minutes from Berlin's 02:00");
}

/// `rollout plan` says when each wave is expected to start and end: here the canary's window opens in each
/// phone's own zone, and the second wave waits for the first to end and soak.
#[test]
fn a_plan_says_when_its_waves_start_and_end_given_the_windows() {
    let now = t("2026-12-07T12:00:00Z");
    let mut e = fleet_in(&[Some("Europe/Berlin"), Some("Europe/Berlin"), Some("America/New_York"), None], now);
    let schedule = Schedule { windows: windows(&["daily 01:00-05:00"]), ..Schedule::default() };
    let gates = Gates { soak_secs: 3600, ..Gates::default() };
    let spec = crate::model::RolloutSpec {
        waves: spec(&["50%", "100%"], gates.clone()).waves,
        ..scheduled(schedule, gates, None)
    };
    let plan = e.plan(&spec, 0).unwrap();
    let timing = e.forecast(&plan, None, now);
    assert_eq!((timing.job_secs, timing.job_basis.as_str()), (600, "assumed"));
    let zones_of =
        |w: usize| -> Vec<String> { plan.waves[w].devices.iter().map(|d| e.zone_of(d, None).to_string()).collect() };
    // Whatever the draw, a wave starts when the first of its zones opens (Berlin 00:00, UTC 01:00, New York
    // 06:00) and ends ten minutes after the last one opened.
    let opens = |zone: &str| match zone {
        "Europe/Berlin" => t("2026-12-08T00:00:00Z"),
        "UTC" => t("2026-12-08T01:00:00Z"),
        _ => t("2026-12-08T06:00:00Z"),
    };
    let first = zones_of(0).iter().map(|z| opens(z)).min().unwrap();
    let last = zones_of(0).iter().map(|z| opens(z)).max().unwrap();
    assert_eq!(timing.waves[0].starts, Some(first), "{:?}", zones_of(0));
    assert_eq!(timing.waves[0].ends, Some(last + 10 * MINUTE));
    assert!(timing.waves[1].starts.unwrap() >= last + 10 * MINUTE + HOUR, "after the soak: {timing:?}");
    // Once a job has succeeded, its time is the estimate.
    let r = create(&mut e, spec);
    op(&mut e, &r, Action::Start, t("2026-12-08T00:00:00Z")).unwrap();
    let sent = e.jobs_of(&r).find(|j| j.sent_at.is_some()).unwrap();
    e.handle(Input::Report(sent.device.clone(), succeeded(&sent.id().to_string())), t("2026-12-08T00:04:00Z")).unwrap();
    assert_eq!(e.forecast(&plan, None, now).job_basis, "median of 1 finished jobs");
    assert_eq!(e.forecast(&plan, None, now).job_secs, 240);
}
