//! Data-driven engine tests: each file in `testdata/scenarios/` is a fleet, a rollout, and a script of
//! operator actions, device reports and ticks, with the expected outcome after each step. Adding a case is
//! adding a file. The format:
//!
//! ```text
//! # comment
//! fleet 20 level=3 version=V3R1.0.0 zone=Europe/Berlin   # devices d000..d019 (prefix= to change; zone=
//!                                                          #   the time zone their hello names)
//! device x1 level=2 version=V3R1.0.0 zone=America/New_York
//! window Mon-Fri 19:00-06:00               # the next rollout's command windows (repeat), before `rollout`
//! install-window daily 22:00-05:00         # ... its install windows
//! wave-window 2 Sat,Sun 00:00-24:00        # ... a wave's own command window
//! rollout waves=10%,100% success=95% failure=10% failure-min=3 on-failure=pause soak=60
//!         timeout=600 max=2 approval=true rejection=20% rejection-min=5 seed=1
//!         timezone=Asia/Tokyo rate=60/min ramp=exponential:start=10/min,factor=2,every=5   (one line)
//! at 1000 start|pause|resume|abort|cancel|retry|approve|tick|stop|stop-abort  [!error]
//! at 2026-12-07T19:00:00Z tick                                (a time as milliseconds or in UTC)
//! at 2000 report WHO succeeded|failed|rejected-hw|rejected-sw|downloading|downloaded|cancelled
//!         WHO: a device id, `in-flight` (every device in flight), `in-flight:3` (the first three),
//!              `timed-out`, `timed-out:1`
//! at 2000 hello WHO                                           (the device says hello again)
//! expect state=active wave=2 stage=updating|soaking|awaiting_approval cause=failure_threshold
//! expect counts succeeded=2 failed=1 in_progress=8 ...    (outcome names as the API spells them)
//! expect reached 10                                       (devices ever commanded)
//! expect commanded d000,d001                              (devices ever commanded, exactly these)
//! expect next 2026-12-07T18:00:00Z                        (when the engine next wants a tick; or `none`)
//! expect sent cancel=2 update=0                           (commands of the step before, by type)
//! analysis calls success=<0.01 interval=60 count=3 failure-limit=1 on-failure=abort   (before `rollout`)
//! at 61500 measure calls 0.002|nodata|error               (answers the measurement the engine asked for)
//! expect measuring 1                                      (measurements asked for and not answered)
//! expect analysis calls measured=1 failed=1 last=0.05      (an analysis gate's readings, as the API gives them)
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
    /// The next rollout's schedule, as `window` lines give it.
    schedule: crate::model::Schedule,
    /// Per wave (1-based): command windows.
    wave_windows: Vec<(usize, crate::schedule::Window)>,
    /// The commands the last `at` step sent.
    sent: Vec<bindwave_proto::wire::Command>,
    /// The time zone each device's hello names.
    zones: std::collections::BTreeMap<String, String>,
    /// The next rollout's analyses.
    analyses: Vec<crate::model::Analysis>,
    /// Measurements the engine asked for and no step has answered.
    asked: Vec<crate::engine::Measure>,
}

/// A time: milliseconds, or a UTC time (`2026-12-07T19:00:00Z`).
fn time(text: &str) -> u64 {
    text.parse::<u64>().unwrap_or_else(|_| {
        let ts: jiff::Timestamp = text.parse().unwrap_or_else(|e| panic!("{text:?} is not a time: {e}"));
        ts.as_millisecond() as u64
    })
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
        "downloaded" => Report { state: JobState::Downloaded, ..base },
        "cancelled" => Report { state: JobState::Cancelled, running_version: old, ..base },
        other => panic!("unknown report outcome {other:?}"),
    }
}

impl Run {
    fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.file)
    }

    /// The (device, job id) pairs WHO names: a device, `in-flight`, `in-flight:N`, `timed-out`, `timed-out:N`.
    fn pick(&self, r: &RolloutId, who: &str, here: &str) -> Vec<(String, String)> {
        let (group, n) = who.split_once(':').map_or((who, usize::MAX), |(g, n)| (g, n.parse().unwrap()));
        let pick = |f: &dyn Fn(&crate::model::Job) -> bool| -> Vec<(String, String)> {
            self.engine
                .jobs_of(r)
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
                    .jobs_of(r)
                    .find(|j| j.device.as_str() == who)
                    .unwrap_or_else(|| panic!("{here}: no job for {who}"));
                vec![(j.device.to_string(), j.id().to_string())]
            }
        }
    }

    fn step(&mut self, line: usize, words: &[&str]) {
        let here = self.at(line);
        match words {
            ["fleet", n, rest @ ..] => {
                let opts = kv(rest);
                let get =
                    |k: &str, d: &str| opts.iter().find(|(key, _)| key == k).map_or(d.to_string(), |(_, v)| v.clone());
                let prefix = get("prefix", "d");
                let zone = opts.iter().find(|(k, _)| k == "zone").map(|(_, v)| v.clone());
                for i in 0..n.parse::<usize>().unwrap() {
                    let mut h = hello(
                        &format!("{prefix}{i:03}"),
                        get("level", "3").parse().unwrap(),
                        &get("version", "V3R1.0.0"),
                    );
                    h.timezone = zone.as_deref().map(Into::into);
                    if let Some(z) = &zone {
                        self.zones.insert(h.device_id.to_string(), z.clone());
                    }
                    self.engine.handle(Input::Hello(h), 0).unwrap();
                }
            }
            ["device", id, rest @ ..] => {
                let opts = kv(rest);
                let get =
                    |k: &str, d: &str| opts.iter().find(|(key, _)| key == k).map_or(d.to_string(), |(_, v)| v.clone());
                let mut h = hello(id, get("level", "3").parse().unwrap(), &get("version", "V3R1.0.0"));
                if let Some((_, z)) = opts.iter().find(|(k, _)| k == "zone") {
                    h.timezone = Some(z.as_str().into());
                    self.zones.insert(id.to_string(), z.clone());
                }
                self.engine.handle(Input::Hello(h), 0).unwrap();
            }
            ["analysis", name, rest @ ..] => {
                let mut a = crate::model::Analysis::parse_inline(name, &format!("q({name}) < 1")).unwrap();
                for (k, v) in kv(rest) {
                    match k.as_str() {
                        "success" => a.success = v.parse().unwrap_or_else(|e| panic!("{here}: {e}")),
                        "interval" => a.interval_secs = v.parse().unwrap(),
                        "count" => a.count = v.parse().unwrap(),
                        "failure-limit" => a.failure_limit = v.parse().unwrap(),
                        "on-failure" => a.on_failure = if v == "abort" { GateAction::Abort } else { GateAction::Pause },
                        other => panic!("{here}: unknown analysis setting {other:?}"),
                    }
                }
                self.analyses.push(a);
            }
            ["window", text @ ..] => {
                self.schedule.windows.push(text.join(" ").parse().unwrap_or_else(|e| panic!("{here}: {e}")))
            }
            ["install-window", text @ ..] => {
                self.schedule.install_windows.push(text.join(" ").parse().unwrap_or_else(|e| panic!("{here}: {e}")))
            }
            ["wave-window", n, text @ ..] => {
                let w = text.join(" ").parse().unwrap_or_else(|e| panic!("{here}: {e}"));
                self.wave_windows.push((n.parse().unwrap(), w));
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
                        "timezone" => spec.timezone = Some(v),
                        "rate" => self.schedule.rate = Some(v.parse().unwrap_or_else(|e| panic!("{here}: {e}"))),
                        "ramp" => self.schedule.ramp = Some(v.parse().unwrap_or_else(|e| panic!("{here}: {e}"))),
                        other => panic!("{here}: unknown rollout setting {other:?}"),
                    }
                }
                spec.schedule = std::mem::take(&mut self.schedule);
                spec.gates.analyses = std::mem::take(&mut self.analyses);
                for (n, w) in std::mem::take(&mut self.wave_windows) {
                    let wave = spec.waves.get_mut(n - 1).unwrap_or_else(|| panic!("{here}: no wave {n}"));
                    wave.schedule.windows.get_or_insert_with(Vec::new).push(w);
                }
                let (reply, _) = self
                    .engine
                    .handle(Input::CreateRollout { spec: Box::new(spec), seed: 0, actor: "scenario".into() }, 0)
                    .unwrap_or_else(|e| panic!("{here}: {e}"));
                let crate::engine::Reply::Rollout(r) = reply else { panic!("{here}: no rollout") };
                self.rollout = Some(r.id);
            }
            ["at", t, rest @ ..] => {
                let now = time(t);
                let r = self.rollout.unwrap_or_else(|| panic!("{here}: no rollout yet"));
                let (words, want_error) = match rest.last() {
                    Some(&"!error") => (&rest[..rest.len() - 1], true),
                    _ => (rest, false),
                };
                let result = match words {
                    ["tick"] => self.engine.handle(Input::Tick, now).map(|(_, fx)| fx),
                    ["measure", name, value] => {
                        let gates = &self.engine.rollout(&r).unwrap().waves;
                        let at = self
                            .asked
                            .iter()
                            .position(|m| gates[m.wave].gates.analyses[m.analysis].name == *name)
                            .unwrap_or_else(|| panic!("{here}: no measurement of {name} was asked for"));
                        let m = self.asked.remove(at);
                        let result = match *value {
                            "nodata" => crate::engine::Measured::NoData,
                            "error" => crate::engine::Measured::Failed("scenario: connection refused".into()),
                            v => crate::engine::Measured::Values(vec![v.parse().unwrap()]),
                        };
                        let input = Input::Measured { rollout: m.rollout, wave: m.wave, analysis: m.analysis, result };
                        self.engine.handle(input, now).map(|(_, fx)| fx)
                    }
                    ["hello", who] => {
                        let mut fx = crate::engine::Effects::default();
                        for (device, _) in self.pick(&r, who, &here) {
                            let mut h = hello(&device, 3, "V3R1.0.0");
                            h.timezone = self.zones.get(&device).map(|z| z.as_str().into());
                            fx.extend(self.engine.handle(Input::Hello(h), now).unwrap().1);
                        }
                        Ok(fx)
                    }
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
                        .map(|(_, fx)| fx),
                    ["report", who, what] => {
                        let targets = self.pick(&r, who, &here);
                        let mut fx = crate::engine::Effects::default();
                        for (device, job) in targets {
                            let (_, more) = self
                                .engine
                                .handle(Input::Report(device.parse().unwrap(), outcome_report(&job, what)), now)
                                .unwrap();
                            fx.extend(more);
                        }
                        Ok(fx)
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
                            .map(|(_, fx)| fx)
                    }
                    other => panic!("{here}: cannot read {other:?}"),
                };
                assert_eq!(result.is_err(), want_error, "{here}: {result:?}");
                let fx = result.unwrap_or_default();
                self.asked.extend(fx.measure);
                self.sent = fx.publish.into_iter().map(|(_, c)| c).collect();
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
            ["expect", "commanded", list] => {
                let mut got: Vec<String> = self
                    .engine
                    .jobs_of(self.rollout.as_ref().unwrap())
                    .filter(|j| j.sent_at.is_some())
                    .map(|j| j.device.to_string())
                    .collect();
                got.sort();
                let mut want: Vec<String> = list.split(',').filter(|d| *d != "none").map(String::from).collect();
                want.sort();
                assert_eq!(got, want, "{here}: devices ever commanded");
            }
            ["expect", "next", at] => {
                let want = (*at != "none").then(|| time(at));
                let shown =
                    |t: Option<u64>| t.map(|t| jiff::Timestamp::from_millisecond(t as i64).unwrap().to_string());
                assert_eq!(shown(self.engine.next_deadline()), shown(want), "{here}: the next tick wanted");
            }
            ["expect", "sent", rest @ ..] => {
                for (k, v) in kv(rest) {
                    let n = self
                        .sent
                        .iter()
                        .filter(|c| {
                            let kind: &'static str = bindwave_proto::wire::CommandKind::from(*c).into();
                            kind == k
                        })
                        .count();
                    assert_eq!(n, v.parse::<usize>().unwrap(), "{here}: {k} commands; sent {:?}", self.sent);
                }
            }
            ["expect", "analysis", name, rest @ ..] => {
                let readings = self.engine.analysis_readings(self.rollout.as_ref().unwrap());
                let r =
                    readings.iter().find(|r| r.name == *name).unwrap_or_else(|| panic!("{here}: no reading of {name}"));
                for (k, v) in kv(rest) {
                    let got = match k.as_str() {
                        "measured" => r.measured.to_string(),
                        "failed" => r.failed.to_string(),
                        "last" => r.last_value.map_or("none".into(), |x| x.to_string()),
                        other => panic!("{here}: no analysis figure {other:?}"),
                    };
                    assert_eq!(got, v, "{here}: analysis {name} {k}");
                }
            }
            ["expect", "measuring", n] => {
                assert_eq!(self.asked.len(), n.parse::<usize>().unwrap(), "{here}: measurements asked for");
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
    let mut run = Run {
        engine: Engine::new("http://ctl"),
        rollout: None,
        file: path.display().to_string(),
        schedule: Default::default(),
        wave_windows: Vec::new(),
        sent: Vec::new(),
        zones: Default::default(),
        analyses: Vec::new(),
        asked: Vec::new(),
    };
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
