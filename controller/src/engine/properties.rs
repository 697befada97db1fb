//! The engine under generated histories: reports (final, repeated, for jobs it never sent), hellos, operator
//! actions, time passing and restarts from what it persisted, interleaved at random. After every step the
//! invariants hold:
//! - the per-wave counts are the jobs' outcomes, counted again;
//! - a final outcome (succeeded, rejected, failed) never changes, and is acknowledged every time it is reported;
//! - an engine restarted from its persisted records has the same rollout, the same jobs (progress aside, which
//!   is never written) and the same counts, and owes exactly the commands still in flight.

use std::collections::BTreeMap;

use bindwave_proto::wire::Command;
use proptest::prelude::*;

use super::testkit::{failed, fleet, hello, image, rejected_hw, spec, succeeded};
use super::{Action, Effects, Engine, Input, Record};
use crate::model::{Gates, Job, JobPhase, Millis, Outcome, RolloutId, Tally};

const DEVICES: usize = 24;

#[derive(Debug, Clone)]
enum Step {
    /// Device `n` reports on its current job: 0 succeeded, 1 failed, 2 rejected.
    Report(usize, u8),
    /// Device `n` reports on a job id of its own that the engine never sent.
    Stranger(usize),
    Hello(usize),
    Act(Action),
    /// Time passes, in seconds.
    Wait(u16),
    /// The controller restarts from its store.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..DEVICES, 0u8..3).prop_map(|(n, k)| Step::Report(n, k)),
        1 => (0..DEVICES).prop_map(Step::Stranger),
        2 => (0..DEVICES).prop_map(Step::Hello),
        1 => prop::sample::select(vec![Action::Pause, Action::Resume, Action::Abort, Action::Retry, Action::Approve])
            .prop_map(Step::Act),
        2 => (0u16..120).prop_map(Step::Wait),
        1 => Just(Step::Restart),
    ]
}

fn device(n: usize) -> String {
    format!("d{n:03}")
}

/// What a store keeps: the last record under each key, loaded back in the store's order.
#[derive(Default)]
struct Store {
    trees: [BTreeMap<String, Record>; 6],
}

impl Store {
    fn put(&mut self, fx: &Effects) {
        for r in &fx.persist {
            let (tree, key) = match r {
                Record::Device(d) => (0, d.id.to_string()),
                Record::Image(i) => (1, i.sha256.to_string()),
                Record::Rollout(ro) => (2, ro.id.to_string()),
                Record::Members(m) => (3, format!("{}/{:010}", m.rollout, m.first)),
                Record::Job(j) => (4, format!("{}/{}", j.rollout, j.device)),
                Record::Audit(a) => (5, format!("{:020}", a.seq)),
            };
            self.trees[tree].insert(key, r.clone());
        }
    }

    fn restore(&self) -> (Engine, Effects) {
        let mut e = Engine::new("http://ctl:8080/");
        for tree in &self.trees {
            for r in tree.values() {
                e.restore(r.clone());
            }
        }
        let owed = e.resume(0);
        (e, owed)
    }
}

fn final_phase(p: &JobPhase) -> bool {
    matches!(p, JobPhase::Succeeded { .. } | JobPhase::Rejected { .. } | JobPhase::Failed { .. })
}

/// Progress is kept in memory only: a restored job that was running is `sent` again.
fn as_stored(mut j: Job) -> Job {
    if matches!(j.phase, JobPhase::Running { .. }) {
        j.phase = JobPhase::Sent;
    }
    j
}

fn counted(e: &Engine, r: &RolloutId) -> Vec<Tally> {
    let mut t = vec![Tally::default(); e.rollout(r).map_or(0, |ro| ro.waves.len())];
    for j in e.jobs_of(r) {
        t[j.wave].add(j.phase.outcome());
    }
    t
}

fn updates(fx: &Effects) -> Vec<(String, String)> {
    let mut u: Vec<(String, String)> = fx
        .publish
        .iter()
        .filter_map(|(d, c)| match c {
            Command::Update(u) => Some((d.to_string(), u.job_id.clone())),
            _ => None,
        })
        .collect();
    u.sort();
    u
}

fn acked(fx: &Effects, device: &str, job: &str) -> bool {
    fx.publish.iter().any(|(d, c)| d.as_str() == device && matches!(c, Command::Ack { job_id } if job_id == job))
}

fn run(steps: Vec<Step>, waves: Vec<&'static str>, max_concurrent: Option<usize>) -> Result<(), TestCaseError> {
    let mut e = fleet(DEVICES);
    let mut store = Store::default();
    for d in e.devices() {
        store.trees[0].insert(d.id.to_string(), Record::Device(Box::new(d.clone())));
    }
    store.put(&e.handle(Input::AddImage(image()), 0).unwrap().1);
    let gates = Gates { max_concurrent, soak_secs: 30, device_timeout_secs: 300, ..Gates::default() };
    let (reply, fx) =
        e.handle(Input::CreateRollout { spec: Box::new(spec(&waves, gates)), seed: 3, actor: "a".into() }, 1).unwrap();
    store.put(&fx);
    let r = match reply {
        super::Reply::Rollout(ro) => ro.id,
        other => return Err(TestCaseError::fail(format!("{other:?}"))),
    };
    let fx = e
        .handle(Input::Operate { rollout: r, action: Action::Start, actor: "a".into(), reason: "t".into() }, 2)
        .unwrap()
        .1;
    store.put(&fx);
    let mut now: Millis = 2;
    let mut finals: BTreeMap<String, (u32, Outcome)> = BTreeMap::new();
    for (i, s) in steps.into_iter().enumerate() {
        now += 1;
        let at = format!("step {i}: {s:?}");
        match s {
            Step::Report(n, kind) => {
                let name = device(n);
                let Some(job) = e.jobs_of(&r).find(|j| j.device.as_str() == name) else { continue };
                let id = job.id().to_string();
                let report = match kind {
                    0 => succeeded(&id),
                    1 => failed(&id),
                    _ => rejected_hw(&id),
                };
                let was_sent = job.sent_at.is_some() || final_phase(&job.phase);
                let fx = e.handle(Input::Report(job.device.clone(), report), now).unwrap().1;
                if was_sent {
                    prop_assert!(acked(&fx, &name, &id), "{at}: a final report on a sent job is acknowledged");
                }
                store.put(&fx);
            }
            Step::Stranger(n) => {
                let name = device(n);
                let fx = e.handle(Input::Report(super::testkit::id(&name), succeeded(&format!("r9-{name}-1"))), now);
                store.put(&fx.unwrap().1);
            }
            Step::Hello(n) => {
                store.put(&e.handle(Input::Hello(hello(&device(n), 3, "V3 R1.0.0")), now).unwrap().1);
            }
            Step::Act(action) => {
                let input = Input::Operate { rollout: r, action, actor: "a".into(), reason: "t".into() };
                // An action the state does not allow is refused, and changes nothing.
                let before = (e.rollout(&r).cloned(), e.wave_tallies(&r));
                match e.handle(input, now) {
                    Ok((_, fx)) => store.put(&fx),
                    Err(_) => prop_assert_eq!(before, (e.rollout(&r).cloned(), e.wave_tallies(&r)), "{}", at),
                }
            }
            Step::Wait(secs) => {
                now += u64::from(secs) * 1000;
                store.put(&e.handle(Input::Tick, now).unwrap().1);
            }
            Step::Restart => {
                let (restored, owed) = store.restore();
                prop_assert_eq!(restored.rollout(&r), e.rollout(&r), "{}", at);
                let jobs = |e: &Engine| e.jobs_of(&r).map(as_stored).collect::<Vec<_>>();
                prop_assert_eq!(jobs(&restored), jobs(&e), "{}", at);
                prop_assert_eq!(restored.wave_tallies(&r), counted(&restored, &r), "{}", at);
                let in_flight: Vec<(String, String)> = {
                    let mut v: Vec<_> = restored
                        .jobs_of(&r)
                        .filter(|j| j.phase.in_flight())
                        .map(|j| (j.device.to_string(), j.id().to_string()))
                        .collect();
                    v.sort();
                    v
                };
                prop_assert_eq!(updates(&owed), in_flight, "{}: what a restart owes", at);
                store.put(&owed);
                e = restored;
            }
        }
        prop_assert_eq!(e.wave_tallies(&r), counted(&e, &r), "{}: the counts are the jobs'", at);
        for j in e.jobs_of(&r) {
            let key = j.device.to_string();
            if final_phase(&j.phase) {
                let seen = finals.entry(key).or_insert((j.attempt, j.phase.outcome()));
                if seen.0 == j.attempt {
                    prop_assert_eq!(seen.1, j.phase.outcome(), "{}: {}'s final outcome changed", at, j.device);
                } else {
                    // A retry is a new attempt, with an outcome of its own.
                    prop_assert!(seen.0 < j.attempt, "{}: {}'s attempt went backwards", at, j.device);
                    *seen = (j.attempt, j.phase.outcome());
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_invariants_hold_under_any_interleaving(
        steps in prop::collection::vec(step(), 1..120),
        waves in prop::sample::select(vec![vec!["100%"], vec!["10%", "100%"], vec!["1", "25%", "100%"]]),
        max_concurrent in prop::option::of(1usize..6),
    ) {
        run(steps, waves, max_concurrent)?;
    }
}
