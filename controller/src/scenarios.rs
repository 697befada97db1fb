//! Data-driven engine tests: each file in `testdata/scenarios/` is a fleet, a rollout, and a script of
//! operator actions, device reports and ticks, with the expected outcome after each step. Adding a case is
//! adding a file. The format:
//!
//! ```text
//! # comment
//! fleet 20 level=3 version=V3R1.0.0          # devices d000..d019 (prefix= to change)
//! device x1 level=2 version=V3R1.0.0
//! rollout waves=10%,100% success=95% failure=10% failure-min=3 on-failure=pause soak=60
//!         timeout=600 max=2 approval=true rejection=20% rejection-min=5 seed=1   (one line)
//! at 1000 start|pause|resume|abort|retry|approve|tick|stop|stop-abort  [!error]
//! at 2000 report WHO succeeded|failed|rejected-hw|rejected-sw|downloading
//!         WHO: a device id, `in-flight` (every device in flight), `in-flight:3` (the first three),
//!              `timed-out`, `timed-out:1`
//! expect state=active wave=2 stage=updating|soaking|awaiting_approval cause=failure_threshold
//! expect counts succeeded=2 failed=1 in_progress=8 ...    (outcome names as the API spells them)
//! expect reached 10                                       (devices ever commanded)
//! ```

use std::path::Path;

use bindwave_proto::wire::{JobState, Reason, Report};
use bindwave_proto::HardwareLevel;

use crate::engine::testkit::hello;
use crate::engine::{Action, Engine, Input};
use crate::model::{
    GateAction, Gates, Image, ImageId, Outcome, RolloutId, RolloutSpec, RolloutState, Stage, TargetFilter, WaveSpec,
};

struct Run {
    engine: Engine,
    rollout: Option<RolloutId>,
    file: String,
}

fn kv(words: &[&str]) -> Vec<(String, String)> {
    words.iter().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn outcome_report(job: &str, what: &str) -> Report {
    let base = Report {
        job_id: job.into(),
        state: JobState::Downloading,
        progress: None,
        running_version: None,
        reason: None,
        override_used: false,
        download: None,
    };
    let old = Some("V3 R1.0.0".parse().unwrap());
    match what {
        "succeeded" => {
            Report { state: JobState::Succeeded, running_version: Some("V3 R3.18.0".parse().unwrap()), ..base }
        }
        "failed" => Report {
            state: JobState::Failed,
            reason: Some(Reason::InstallFailed { detail: "scenario".into() }),
            running_version: old,
            ..base
        },
        "rejected-hw" => Report {
            state: JobState::Rejected,
            reason: Some(Reason::HardwareLevelIncompatible {
                device_level: HardwareLevel(2),
                bind_levels: vec![HardwareLevel(3)],
                level_source: None,
                level_conflict: None,
            }),
            running_version: old,
            ..base
        },
        "rejected-sw" => Report {
            state: JobState::Rejected,
            reason: Some(Reason::SoftwareLevelBelowMinimum {
                bind_version: "1.0".parse().unwrap(),
                minimum: "2.0".parse().unwrap(),
            }),
            running_version: old,
            ..base
        },
        "downloading" => Report { progress: Some(50), ..base },
        other => panic!("unknown report outcome {other:?}"),
    }
}

impl Run {
    fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.file)
    }

    fn step(&mut self, line: usize, words: &[&str]) {
        let here = self.at(line);
        match words {
            ["fleet", n, rest @ ..] => {
                let opts = kv(rest);
                let get =
                    |k: &str, d: &str| opts.iter().find(|(key, _)| key == k).map_or(d.to_string(), |(_, v)| v.clone());
                let prefix = get("prefix", "d");
                for i in 0..n.parse::<usize>().unwrap() {
                    let h = hello(
                        &format!("{prefix}{i:03}"),
                        get("level", "3").parse().unwrap(),
                        &get("version", "V3R1.0.0"),
                    );
                    self.engine.handle(Input::Hello(h), 0).unwrap();
                }
            }
            ["device", id, rest @ ..] => {
                let opts = kv(rest);
                let get =
                    |k: &str, d: &str| opts.iter().find(|(key, _)| key == k).map_or(d.to_string(), |(_, v)| v.clone());
                self.engine
                    .handle(Input::Hello(hello(id, get("level", "3").parse().unwrap(), &get("version", "V3R1.0.0"))), 0)
                    .unwrap();
            }
            ["rollout", rest @ ..] => {
                let image = Image {
                    sha256: ImageId::parse(&"ab".repeat(32)).unwrap(),
                    size: 100,
                    software_version: "V3 R3.18.0".parse().unwrap(),
                    hardware_levels: None,
                    payload_sha256: "cd".repeat(32),
                    payload_len: 50,
                    added_at: 0,
                    signed_by: None,
                };
                self.engine.handle(Input::AddImage(image), 0).unwrap();
                let mut spec = RolloutSpec {
                    image: "ababab".into(),
                    targets: TargetFilter::default(),
                    waves: vec![],
                    gates: Gates::default(),
                    schedule: Default::default(),
                    timezone: None,
                    override_compat: false,
                    override_reason: None,
                    use_defaults: false,
                    seed: Some(1),
                };
                let ratio = |v: &str| crate::cli::parse_ratio(v).unwrap_or_else(|e| panic!("{here}: {e}"));
                let action = |v: &str| if v == "abort" { GateAction::Abort } else { GateAction::Pause };
                for (k, v) in kv(rest) {
                    let g = &mut spec.gates;
                    match k.as_str() {
                        "waves" => {
                            spec.waves = v
                                .split(',')
                                .map(|s| WaveSpec {
                                    size: s.parse().unwrap(),
                                    gates: Default::default(),
                                    schedule: Default::default(),
                                })
                                .collect()
                        }
                        "success" => g.success_ratio = ratio(&v),
                        "failure" => g.failure_ratio = ratio(&v),
                        "failure-min" => g.failure_min_finished = v.parse().unwrap(),
                        "on-failure" => g.on_failure = action(&v),
                        "rejection" => g.rejection_ratio = Some(ratio(&v)),
                        "rejection-min" => g.rejection_min_finished = v.parse().unwrap(),
                        "on-rejection" => g.on_rejection = action(&v),
                        "soak" => g.soak_secs = v.parse().unwrap(),
                        "timeout" => g.device_timeout_secs = v.parse().unwrap(),
                        "max" => g.max_concurrent = Some(v.parse().unwrap()),
                        "approval" => g.approval = v.parse().unwrap(),
                        "seed" => spec.seed = Some(v.parse().unwrap()),
                        other => panic!("{here}: unknown rollout setting {other:?}"),
                    }
                }
                let (reply, _) = self
                    .engine
                    .handle(Input::CreateRollout { spec: Box::new(spec), seed: 0, actor: "scenario".into() }, 0)
                    .unwrap_or_else(|e| panic!("{here}: {e}"));
                let crate::engine::Reply::Rollout(r) = reply else { panic!("{here}: no rollout") };
                self.rollout = Some(r.id);
            }
            ["at", t, rest @ ..] => {
                let now: u64 = t.parse().unwrap();
                let r = self.rollout.unwrap_or_else(|| panic!("{here}: no rollout yet"));
                let (words, want_error) = match rest.last() {
                    Some(&"!error") => (&rest[..rest.len() - 1], true),
                    _ => (rest, false),
                };
                let result = match words {
                    ["tick"] => self.engine.handle(Input::Tick, now).map(drop),
                    ["stop"] | ["stop-abort"] => self
                        .engine
                        .handle(
                            Input::EmergencyStop {
                                actor: "scenario".into(),
                                reason: "scenario".into(),
                                abort: words[0] == "stop-abort",
                            },
                            now,
                        )
                        .map(drop),
                    ["report", who, what] => {
                        let targets: Vec<(String, String)> = {
                            let (group, n) =
                                who.split_once(':').map_or((*who, usize::MAX), |(g, n)| (g, n.parse().unwrap()));
                            let pick = |f: &dyn Fn(&crate::model::Job) -> bool| -> Vec<(String, String)> {
                                self.engine
                                    .jobs_of(&r)
                                    .filter(|j| f(j))
                                    .take(n)
                                    .map(|j| (j.device.to_string(), j.id().to_string()))
                                    .collect()
                            };
                            match group {
                                "in-flight" => pick(&|j| j.phase.in_flight()),
                                "timed-out" => pick(&|j| j.phase == crate::model::JobPhase::TimedOut),
                                _ => {
                                    let j = self
                                        .engine
                                        .jobs_of(&r)
                                        .find(|j| j.device.as_str() == *who)
                                        .unwrap_or_else(|| panic!("{here}: no job for {who}"));
                                    vec![(j.device.to_string(), j.id().to_string())]
                                }
                            }
                        };
                        for (device, job) in targets {
                            self.engine
                                .handle(Input::Report(device.parse().unwrap(), outcome_report(&job, what)), now)
                                .unwrap();
                        }
                        Ok(())
                    }
                    [action] => {
                        let action: Action = action.parse().unwrap_or_else(|e| panic!("{here}: {e}"));
                        self.engine
                            .handle(
                                Input::Operate {
                                    rollout: r,
                                    action,
                                    actor: "scenario".into(),
                                    reason: "scenario".into(),
                                },
                                now,
                            )
                            .map(drop)
                    }
                    other => panic!("{here}: cannot read {other:?}"),
                };
                assert_eq!(result.is_err(), want_error, "{here}: {result:?}");
            }
            ["expect", "counts", rest @ ..] => {
                let tally = self.engine.tally(self.rollout.as_ref().unwrap());
                for (k, v) in kv(rest) {
                    let o = Outcome::ALL
                        .iter()
                        .find(|o| o.as_str() == k)
                        .unwrap_or_else(|| panic!("{here}: no outcome {k:?}"));
                    assert_eq!(
                        tally.get(*o),
                        v.parse::<usize>().unwrap(),
                        "{here}: {k}; all counts {:?}",
                        tally.to_map()
                    );
                }
            }
            ["expect", "reached", n] => {
                let reached =
                    self.engine.jobs_of(self.rollout.as_ref().unwrap()).filter(|j| j.sent_at.is_some()).count();
                assert_eq!(reached, n.parse::<usize>().unwrap(), "{here}: devices ever commanded");
            }
            ["expect", rest @ ..] => {
                let state = self.engine.rollout(self.rollout.as_ref().unwrap()).unwrap().state.clone();
                let json = serde_json::to_value(&state).unwrap();
                for (k, v) in kv(rest) {
                    let got = match k.as_str() {
                        "state" => state.name().to_string(),
                        // Waves are counted from 1 in scenarios, as operators count them.
                        "wave" => state.wave().map_or("-".into(), |w| (w + 1).to_string()),
                        "stage" => match &state {
                            RolloutState::Active { stage, .. } | RolloutState::Paused { stage, .. } => match stage {
                                Stage::AwaitingApproval => "awaiting_approval".into(),
                                Stage::Updating => "updating".into(),
                                Stage::Soaking { .. } => "soaking".into(),
                            },
                            _ => "-".into(),
                        },
                        "cause" => json["cause"]["cause"].as_str().unwrap_or("-").to_string(),
                        other => panic!("{here}: cannot expect {other:?}"),
                    };
                    assert_eq!(got, v, "{here}: {k}; state {json}");
                }
            }
            other => panic!("{here}: cannot read {other:?}"),
        }
    }
}

fn run_file(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut run = Run { engine: Engine::new("http://ctl"), rollout: None, file: path.display().to_string() };
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        run.step(i + 1, &words);
    }
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "scn"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "scenario files missing in {}", dir.display());
    for f in files {
        run_file(&f);
    }
}
