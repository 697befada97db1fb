//! Staged rollouts to 200 simulated phones over a real broker: waves that pass their gates, a bad image that
//! the failure threshold stops in its first wave, and a controller killed mid-rollout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bindwave_tests::{bin, wait_until, Controller, Proc};
use serde_json::Value;

const N: usize = 200;

fn simulate(dir: &Path, c: &Controller) -> (Proc, PathBuf) {
    let state = dir.join("fleet");
    let mut cmd = Command::new(bin("bindwave"));
    cmd.args(["simulate", "--devices", &N.to_string(), "--broker", &c.mqtt, "--state-dir"]).arg(&state);
    cmd.arg("--controller-key").arg(c.data_dir.join("controller.key.pub"));
    (Proc::spawn("fleet", cmd, dir), state)
}

fn wait_online(c: &Controller, n: usize) {
    wait_until(Duration::from_secs(60), &format!("{n} phones online"), || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
            >= n
    });
}

fn status(c: &Controller, id: &str) -> Value {
    c.json(&["rollout", "status", id, "-o", "json"])
}

fn wait_state(c: &Controller, id: &str, state: &str, secs: u64) -> Value {
    let start = std::time::Instant::now();
    loop {
        let s = status(c, id);
        if s["rollout"]["state"] == state {
            return s;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let open: Vec<&Value> = s["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| !j["phase"]["phase"].as_str().unwrap().ends_with("ed"))
                .take(5)
                .collect();
            panic!(
                "rollout {id} not {state} after {secs}s: {:#}\ncounts {:#}\nsome open jobs: {open:#?}",
                s["rollout"], s["counts"]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The job ids each phone's journal remembers.
fn journal_jobs(fleet: &Path, device: &str) -> Vec<String> {
    let j: Value = serde_json::from_slice(&std::fs::read(fleet.join(device).join("journal.json")).unwrap_or_default())
        .unwrap_or_default();
    j["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|r| r["job_id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn device_ids() -> Vec<String> {
    (0..N).map(|i| format!("phone-{:05}", i + 1)).collect()
}

#[test]
fn waves_pass_their_gates_and_a_bad_image_stops_in_its_first_wave() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start(d);
    let (_fleet, fleet_dir) = simulate(d, &c);
    wait_online(&c, N);

    // A good bind without the hardware-level field: phones whose minimum is above it reject it, counted apart.
    let good = c.pack_and_add(d, "good", "V3 R3.18.0", None);
    let plan = c.ok(&["rollout", "plan", "--image", &good, "--all", "--waves", "5%,25%,100%", "--seed", "42"]);
    assert!(plan.contains("software level") || plan.contains("below"), "{plan}");
    let r1 =
        c.ok(&["rollout", "create", "--image", &good, "--all", "--waves", "5%,25%,100%", "--seed", "42", "--start"]);
    let s = wait_state(&c, &r1, "finished", 120);
    let sw_low = (0..N).filter(|i| i % 7 == 6).count();
    assert_eq!(s["counts"]["succeeded"], N - sw_low, "{:#}", s["counts"]);
    assert_eq!(s["counts"]["rejected_software"], sw_low);
    let waves = s["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 3);
    // Wave 1 holds one phone of every (hardware level, software version) cohort: 4 levels, all on the factory version.
    assert!(waves[0]["devices"].as_u64().unwrap() >= 10);
    assert!(waves.iter().all(|w| w["passed_at"].is_u64()), "{waves:#?}");
    // The plan's prediction matched what the phones said.
    assert!(
        plan.contains(&format!("{sw_low}  bind software V3 R3.18.0 is below this phone's minimum supported V3 R5.0.0")),
        "{plan}"
    );
    let audit = c.json(&["audit", "--rollout", &r1, "-o", "json"]);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create", "start", "wave", "pass", "wave", "pass", "wave", "pass", "finish"]);

    // A bad image: corrupted on the server after it was added, so every phone that fetches it fails.
    let bad = c.pack_and_add(d, "bad", "V3 R3.19.0", Some("2,3,4,5"));
    let stored = c.data_dir.join("images").join(format!("{bad}.bind"));
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let r2 = c.ok(&[
        "rollout",
        "create",
        "--image",
        &bad,
        "--all",
        "--waves",
        "5%,25%,100%",
        "--failure-threshold",
        "10%",
        "--start",
    ]);
    let s = wait_state(&c, &r2, "paused", 60);
    assert_eq!(s["rollout"]["wave"], 0, "{:#}", s["rollout"]);
    assert_eq!(s["rollout"]["cause"]["cause"], "failure_threshold");
    let wave1 = s["waves"][0]["devices"].as_u64().unwrap() as usize;
    // Let in-flight phones finish, then count every phone that ever got the bad image.
    wait_until(Duration::from_secs(30), "in-flight phones to finish", || status(&c, &r2)["counts"]["in_progress"] == 0);
    let s = status(&c, &r2);
    let reached = device_ids()
        .iter()
        .filter(|id| journal_jobs(&fleet_dir, id).iter().any(|j| j.starts_with(&format!("{r2}-"))))
        .count();
    assert!(reached > 0 && reached <= wave1, "{reached} phones got the bad image; wave 1 has {wave1}");
    assert_eq!(s["counts"]["pending"].as_u64().unwrap() as usize, N - wave1, "nobody past wave 1 was commanded");
    assert_eq!(s["counts"]["succeeded"], 0);
    let reason = s["jobs"].as_array().unwrap().iter().find(|j| j["phase"]["phase"] == "failed").unwrap();
    assert_eq!(reason["phase"]["reason"]["code"], "checksum_mismatch");
    // Nobody runs the bad version.
    let devices = c.json(&["device", "list", "-o", "json"]);
    assert!(devices.as_array().unwrap().iter().all(|d| d["hello"]["software_version"] != "V3 R3.19.0"));

    // The operator aborts: the rest is cancelled, and the audit log says who and why.
    c.ok(&["--actor", "alice", "rollout", "abort", &r2, "--reason", "corrupted mirror"]);
    let s = status(&c, &r2);
    assert_eq!(s["counts"]["cancelled"].as_u64().unwrap() as usize, N - wave1);
    let audit = c.json(&["audit", "--rollout", &r2, "-o", "json"]);
    let last = audit.as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["actor"].as_str(), last["action"].as_str(), last["reason"].as_str()),
        (Some("alice"), Some("abort"), Some("corrupted mirror"))
    );
}

#[test]
fn a_controller_killed_mid_rollout_resumes_and_every_phone_ends_with_one_true_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Controller::start(d);
    let (_fleet, fleet_dir) = simulate(d, &c);
    wait_online(&c, N);
    let image = c.pack_and_add(d, "fw", "V3 R3.18.0", Some("3,4"));
    // A download cut by the kill is a true failure (the phone keeps its old version); loose gates keep such
    // failures from pausing the rollout, and a retry afterwards brings those phones along.
    let r = c.ok(&[
        "rollout",
        "create",
        "--image",
        &image,
        "--all",
        "--waves",
        "10%,50%,100%",
        "--max-concurrent",
        "10",
        "--success-ratio",
        "50%",
        "--failure-threshold",
        "60%",
        "--start",
    ]);

    // Kill it (SIGKILL, no goodbye) while phones are mid-update, twice.
    for target in [30, 90] {
        wait_until(Duration::from_secs(120), &format!("{target} outcomes"), || {
            let s = status(&c, &r);
            let done = s["counts"]["succeeded"].as_u64().unwrap() + s["counts"]["rejected_hardware"].as_u64().unwrap();
            done >= target
        });
        let before = status(&c, &r);
        assert_ne!(before["rollout"]["state"], "finished", "the rollout finished before the kill");
        c.restart(d);
    }
    let mut s = wait_state(&c, &r, "finished", 180);
    if s["counts"]["failed"].as_u64().unwrap() > 0 {
        for j in s["jobs"].as_array().unwrap().iter().filter(|j| j["phase"]["phase"] == "failed") {
            let device = j["device"].as_str().unwrap();
            assert!(!fleet_dir.join(device).join("active").exists(), "{device} failed but switched slots");
            assert_eq!(j["phase"]["running_version"], "V3 R2.9.0");
        }
        c.ok(&["rollout", "retry", &r, "--reason", "downloads cut by the restart"]);
        s = wait_state(&c, &r, "finished", 120);
    }

    // Every phone: exactly one outcome, matching what it runs. Installed phones run the new version from slot b,
    // which also proves the bind was installed once (a second install would have switched back to slot a).
    let jobs = s["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), N);
    let (mut installed, mut rejected) = (0, 0);
    for j in jobs {
        let device = j["device"].as_str().unwrap();
        let active: Value =
            serde_json::from_slice(&std::fs::read(fleet_dir.join(device).join("active")).unwrap_or_default())
                .unwrap_or(Value::Null);
        match j["phase"]["phase"].as_str().unwrap() {
            "succeeded" => {
                installed += 1;
                assert_eq!(active["version"], "V3 R3.18.0", "{device}");
                assert_eq!(active["slot"], "b", "{device} installed more than once");
            }
            "rejected" => {
                rejected += 1;
                assert_eq!(j["phase"]["reason"]["code"], "hardware_level_incompatible", "{device}");
                assert!(active.is_null(), "{device} was rejected but switched slots");
            }
            other => panic!("{device} ended {other}: {j:#}"),
        }
        let runs = journal_jobs(&fleet_dir, device).iter().filter(|id| **id == j["id"].as_str().unwrap()).count();
        assert_eq!(runs, 1, "{device} has {runs} outcomes for its job");
        assert!(j["attempt"].as_u64().unwrap() <= 2, "{device}: {j:#}");
    }
    assert_eq!((installed, rejected), (N / 2, N / 2));
}
