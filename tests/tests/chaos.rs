//! The chaos suite: a rollout to a simulated fleet (and real agents) over a real broker, through what a bad
//! week does to a phone fleet, each run ending with the same checks (`bindwave_tests::chaos::checks`): one
//! true outcome per phone, no half-written image, no job installed twice, and the API, the metrics and the audit
//! log agreeing.
//!
//! Bounded by default (200 phones, 5 controller kills, ...: what CI has time for); `BINDWAVE_CHAOS=full` runs
//! the sizes RELIABILITY.md reports (`tests/chaos.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bindwave_tests::chaos::checks::{check_run, payload_sha256, Expected};
use bindwave_tests::chaos::proxy::{Faults, Proxy};
use bindwave_tests::chaos::watch::Sends;
use bindwave_tests::chaos::{report, Dice, Scale};
use bindwave_tests::{bin, port_of, wait_until, Controller, Mosquitto, Phone, Proc};
use serde_json::Value;

const VERSION: &str = "V3 R3.18.0";

/// A simulated fleet of `n` phones on `broker`, pinning the controller's command key; logged in to its secure
/// embedded broker unless it runs in lab mode.
fn simulate(d: &Path, c: &Controller, n: usize, broker: &str, extra: &[&str]) -> (Proc, PathBuf) {
    let fleet = d.join("fleet");
    let mut cmd = Command::new(bin("bindwave"));
    cmd.args(["simulate", "--devices", &n.to_string(), "--broker", broker, "--state", "nosync"])
        .arg("--state-dir")
        .arg(&fleet)
        .arg("--controller-key")
        .arg(c.data_dir.join("controller.key.pub"))
        .args(extra);
    if !c.lab {
        cmd.arg("--controller-data-dir").arg(&c.data_dir);
    }
    (Proc::spawn("fleet", cmd, d), fleet)
}

fn online(c: &Controller) -> usize {
    c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
}

fn wait_online(c: &Controller, n: usize) {
    wait_until(Duration::from_secs(120), &format!("{n} phones online"), || online(c) >= n);
}

fn status(c: &Controller, r: &str) -> Value {
    c.json(&["rollout", "status", r, "-o", "json"])
}

/// Loose gates: a download cut by a fault is a true failure, and must not pause the rollout.
const LOOSE: [&str; 4] = ["--success-ratio", "50%", "--failure-threshold", "60%"];

fn create(c: &Controller, image: &str, args: &[&str]) -> String {
    let mut all = vec!["rollout", "create", "--image", image, "--all", "--start"];
    all.extend(LOOSE);
    all.extend(args);
    c.ok(&all)
}

/// Waits for the rollout to finish (within `limit`), then retries its failed phones once, as an operator
/// would after the faults are over, and waits again. Returns the failures before the retry.
fn run_to_end(c: &Controller, r: &str, limit: Duration) -> u64 {
    let wait = |what: &str| {
        let start = Instant::now();
        loop {
            let s = status(c, r);
            match s["rollout"]["state"].as_str() {
                Some("finished") => return s,
                Some("paused" | "aborted") => {
                    panic!("rollout {r} stopped ({what}): {:#}\n{:#}", s["rollout"], s["counts"])
                }
                _ => {}
            }
            assert!(start.elapsed() < limit, "rollout {r} not finished after {limit:?} ({what}): {:#}", s["counts"]);
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let s = wait("the faults");
    let failed = s["counts"]["failed"].as_u64().unwrap_or(0) + s["counts"]["timed_out"].as_u64().unwrap_or(0);
    if failed > 0 {
        c.ok(&["rollout", "retry", r, "--reason", "the faults are over"]);
        wait("the retry");
    }
    failed
}

/// The controller, SIGKILLed at random moments mid-rollout and started again on the same data directory,
/// with its embedded broker (which dies and comes back with it), while simulated phones lose power mid-update
/// and some installers fail.
#[test]
fn a_controller_killed_again_and_again_mid_rollout_loses_nothing() {
    let scale = Scale::from_env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Controller::start_secure(d, &[]);
    let mqtt = c.mqtt.clone();
    let (_fleet, fleet) = simulate(d, &c, scale.phones, &mqtt, &["--crash-mid-update", "5%", "--fail-install", "2%"]);
    wait_online(&c, scale.phones);
    let image = c.pack_and_add(d, "fw", VERSION, None);
    // Long enough for every kill to land mid-rollout: five waves, each soaking 4 s, 25 phones at a time.
    let r = create(&c, &image, &["--waves", "2%,10%,25%,50%,100%", "--soak", "4s", "--max-concurrent", "25"]);
    let mut dice = Dice::new(1);
    let mut kills = 0;
    while kills < scale.controller_kills {
        std::thread::sleep(dice.millis(200, 2500));
        if status(&c, &r)["rollout"]["state"] == "finished" {
            break;
        }
        c.restart(d);
        kills += 1;
    }
    assert_eq!(kills, scale.controller_kills, "the rollout finished after {kills} kills: make it longer");
    let failed = run_to_end(&c, &r, Duration::from_secs(600));
    let expected =
        Expected { version: VERSION, payload_sha256: &payload_sha256(&d.join("fw.img")), phones: scale.phones };
    let checked = check_run(&c, &r, &expected, &|device| fleet.join(device));
    report(
        "controller SIGKILL",
        &format!(
            "{} phones, {kills} SIGKILLs of the controller (embedded broker), 5% power cuts mid-update, 2% failing \
             installers; failed before the retry {failed}; outcomes {}; every check held",
            scale.phones,
            checked.outcomes_line()
        ),
    );
}

/// Mosquitto, killed and started again mid-rollout (no persistence: every session and retained message is
/// gone); the controller and the phones reconnect, subscribe again and carry on.
#[test]
fn mosquitto_restarted_mid_rollout_loses_nothing() {
    let scale = Scale::from_env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut m = Mosquitto::start(d);
    let port = port_of(&m.url);
    let c = Controller::start_with(d, &d.join("controller"), 0, None, Some(&m.url));
    let (_fleet, fleet) = simulate(d, &c, scale.phones, &m.url.clone(), &[]);
    wait_online(&c, scale.phones);
    let image = c.pack_and_add(d, "fw", VERSION, None);
    let sends = Sends::watch(&m.url);
    let r = create(&c, &image, &["--waves", "5%,25%,100%", "--soak", "3s", "--max-concurrent", "50"]);
    let mut dice = Dice::new(2);
    let mut restarts = 0;
    while restarts < scale.broker_restarts {
        std::thread::sleep(dice.millis(500, 3000));
        if status(&c, &r)["rollout"]["state"] == "finished" {
            break;
        }
        m.proc.kill();
        std::thread::sleep(dice.millis(200, 1500));
        m = Mosquitto::start_on(d, port);
        restarts += 1;
    }
    assert_eq!(restarts, scale.broker_restarts, "the rollout finished after {restarts} restarts: make it longer");
    let failed = run_to_end(&c, &r, Duration::from_secs(600));
    let expected =
        Expected { version: VERSION, payload_sha256: &payload_sha256(&d.join("fw.img")), phones: scale.phones };
    let checked = check_run(&c, &r, &expected, &|device| fleet.join(device));
    report(
        "Mosquitto restart",
        &format!(
            "{} phones, Mosquitto killed and restarted {restarts} times; failed before the retry {failed}; \
             commands sent again after a reconnect {}; outcomes {}; every check held",
            scale.phones,
            sends.totals().1,
            checked.outcomes_line()
        ),
    );
}

/// Real `bindwave-agent` processes, SIGKILLed while their downloads crawl (a throttled download server) or
/// while they install, and started again; beside them simulated phones lose power mid-update.
#[test]
fn agents_killed_mid_download_and_mid_install_lose_nothing() {
    let scale = Scale::from_env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let proxy = Proxy::start(Faults { rate: Some(40_000), ..Faults::default() }, 3);
    let c = Controller::start_serving(d, &["--allow-unsigned-images", "--public-url", &proxy.url]);
    proxy.set_upstream(c.http.trim_start_matches("http://"));
    let sims = scale.phones - scale.real_agents;
    let (_fleet, fleet) = simulate(d, &c, sims, &c.mqtt.clone(), &["--crash-mid-update", "10%"]);
    let agents_dir = d.join("agents");
    let ids: Vec<String> = (1..=scale.real_agents).map(|i| format!("agent-{i:02}")).collect();
    let table = [("S30817-S7710-A101", 3)];
    // The phone's installer takes two seconds, so that a kill can land mid-install as well as mid-download.
    let installer = "[installer]\ncommand = [\"sh\", \"-c\", \"sleep 2\"]\n";
    let phone = |id: &str| {
        Phone {
            id,
            part_number: "S30817-S7710-A101",
            software_version: "V3 R1.0.0",
            minimum_software_version: "V3 R1.0.0",
        }
        .start_with(&agents_dir, &c.mqtt, &table, installer)
    };
    let mut agents: Vec<Proc> = ids.iter().map(|id| phone(id)).collect();
    wait_online(&c, scale.phones);
    let image = c.pack_and_add(d, "fw", VERSION, None);
    let sends = Sends::watch(&c.mqtt);
    let r = create(&c, &image, &["--waves", "10%,100%", "--max-concurrent", "40"]);
    let mut dice = Dice::new(4);
    // Each real agent is SIGKILLed whenever its last report (a report newer than the one it was last killed on)
    // says it is downloading, up to `agent_kills` times, and once when it says it is installing; each time it
    // is started again at once.
    struct Killed {
        downloading: usize,
        installing: usize,
        on: Value,
    }
    let mut killed: Vec<Killed> =
        ids.iter().map(|_| Killed { downloading: 0, installing: 0, on: Value::Null }).collect();
    let (mut mid_download, mut mid_install) = (0, 0);
    let start = Instant::now();
    let owed = |k: &Killed| k.downloading < scale.agent_kills || k.installing < 1;
    while killed.iter().any(owed) && start.elapsed() < Duration::from_secs(300) {
        let s = status(&c, &r);
        if s["rollout"]["state"] == "finished" {
            break;
        }
        for (i, id) in ids.iter().enumerate() {
            let Some(job) = s["jobs"].as_array().unwrap().iter().find(|j| j["device"] == id.as_str()) else { continue };
            let k = &mut killed[i];
            if job["updated_at"] == k.on || job["phase"]["phase"] != "running" {
                continue;
            }
            match job["phase"]["state"].as_str() {
                Some("downloading" | "verifying") if k.downloading < scale.agent_kills => {
                    k.downloading += 1;
                    mid_download += 1;
                }
                Some("installing") if k.installing < 1 => {
                    k.installing += 1;
                    mid_install += 1;
                }
                _ => continue,
            }
            k.on = job["updated_at"].clone();
            agents[i].kill();
            agents[i] = phone(id);
        }
        std::thread::sleep(dice.millis(150, 500));
    }
    let kills = mid_download + mid_install;
    let failed = run_to_end(&c, &r, Duration::from_secs(600));
    let expected =
        Expected { version: VERSION, payload_sha256: &payload_sha256(&d.join("fw.img")), phones: scale.phones };
    let checked = check_run(&c, &r, &expected, &|device| {
        if device.starts_with("agent-") {
            agents_dir.join(device)
        } else {
            fleet.join(device)
        }
    });
    assert!(mid_download > 0 && mid_install > 0, "killed {mid_download} mid-download and {mid_install} mid-install");
    report(
        "agents killed",
        &format!(
            "{sims} simulated phones (10% power cuts mid-update) and {} real agents SIGKILLed {kills} times \
             ({mid_download} mid-download at 40 kB/s, {mid_install} mid-install); failed before the retry {failed}; \
             commands sent again after a reconnect {}; outcomes {}; every check held",
            scale.real_agents,
            sends.totals().1,
            checked.outcomes_line()
        ),
    );
}

/// A download server that drops connections mid-body, stalls and then drops them, and serves short files,
/// throughout the rollout.
#[test]
fn a_download_server_that_drops_stalls_and_cuts_files_short_loses_nothing() {
    let scale = Scale::from_env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let faults = Faults { drop_pct: 15, stall_pct: 10, short_pct: 10, stall: Duration::from_secs(8), rate: None };
    let proxy = Proxy::start(faults, 5);
    let c = Controller::start_serving(d, &["--allow-unsigned-images", "--public-url", &proxy.url]);
    proxy.set_upstream(c.http.trim_start_matches("http://"));
    let (_fleet, fleet) = simulate(d, &c, scale.phones, &c.mqtt.clone(), &[]);
    wait_online(&c, scale.phones);
    let image = c.pack_and_add(d, "fw", VERSION, None);
    let sends = Sends::watch(&c.mqtt);
    // A download that fails fast (a short file) ends before the sound ones: the failure gate waits for 50
    // outcomes before it judges, so that the first few are not the whole story.
    let r = create(&c, &image, &["--waves", "10%,100%", "--max-concurrent", "100", "--failure-min", "50"]);
    let failed = {
        // The faults last until the rollout first finishes; the retry after it meets a sound server.
        let start = Instant::now();
        loop {
            let s = status(&c, &r);
            if s["rollout"]["state"] == "finished" {
                break;
            }
            assert!(s["rollout"]["state"] != "paused", "paused: {:#}", s["rollout"]);
            assert!(start.elapsed() < Duration::from_secs(600), "not finished: {:#}", s["counts"]);
            std::thread::sleep(Duration::from_millis(300));
        }
        let stats = proxy.stats();
        proxy.set(Faults::default());
        (stats, run_to_end(&c, &r, Duration::from_secs(300)))
    };
    let expected =
        Expected { version: VERSION, payload_sha256: &payload_sha256(&d.join("fw.img")), phones: scale.phones };
    let checked = check_run(&c, &r, &expected, &|device| fleet.join(device));
    let (stats, failed) = failed;
    assert!(stats.dropped > 0 && stats.stalled > 0 && stats.short > 0, "not every fault happened: {stats:?}");
    // No phone reconnected and nothing restarted: each job (a retry is a job of its own) was sent once.
    let (jobs, again) = sends.totals();
    assert_eq!(again, 0, "jobs sent more than once: {:?}", sends.repeated());
    assert_eq!(jobs, scale.phones as u64 + checked.retried, "jobs heard on the broker");
    report(
        "download server faults",
        &format!(
            "{} phones; {} downloads passed, {} dropped mid-body, {} stalled 8 s then dropped, {} cut short; failed \
             before the retry {failed}; every job sent once; outcomes {}; every check held",
            scale.phones,
            stats.passed,
            stats.dropped,
            stats.stalled,
            stats.short,
            checked.outcomes_line()
        ),
    );
}

/// The libfaketime library Debian's `faketime` package installs.
fn libfaketime() -> Option<PathBuf> {
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The controller's wall clock (libfaketime, driven through a file) jumps two hours forward and back during
/// one soak, and is set two hours back across a SIGKILL during the next: no soak ends early, none hangs, no
/// device times out, no phone is taken offline, and the jumps are reported.
#[test]
fn clock_jumps_on_the_controller_neither_end_soaks_early_nor_hang_them() {
    const SOAK: u64 = 12;
    let scale = Scale::from_env();
    let lib = libfaketime().expect("libfaketime is not installed: `apt-get install -y faketime` (.ci/run does)");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let offset = d.join("clock-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let env = [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let mut c = Controller::start_lab_env(d, &env, None, &[]);
    let (_fleet, fleet) = simulate(d, &c, scale.phones, &c.mqtt.clone(), &[]);
    wait_online(&c, scale.phones);
    let image = c.pack_and_add(d, "fw", VERSION, None);
    let sends = Sends::watch(&c.mqtt);
    let soak = format!("{SOAK}s");
    let r = create(&c, &image, &["--waves", "10%,30%,100%", "--soak", &soak, "--device-timeout", "5m"]);
    let stage = |c: &Controller| {
        let s = status(c, &r);
        (s["rollout"]["wave"].as_u64(), s["rollout"]["stage"].as_str().map(str::to_string))
    };
    let soaking = |c: &Controller, wave: u64| stage(c) == (Some(wave), Some("soaking".to_string()));
    let step = |c: &Controller| -> i64 {
        let (_, metrics) = c.get("/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("bindwave_clock_step_seconds "))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };

    // Wave 1's soak: two hours forward, then back.
    wait_until(Duration::from_secs(120), "wave 1 soaking", || soaking(&c, 0));
    let soak_start = Instant::now();
    std::fs::write(&offset, "+7200\n").unwrap();
    wait_until(Duration::from_secs(10), "the forward jump reported", || step(&c) >= 7190);
    std::thread::sleep(Duration::from_secs(2));
    assert!(soaking(&c, 0), "the soak ended early on a forward jump of the wall clock");
    assert_eq!(online(&c), scale.phones, "phones taken offline by a forward jump");
    std::fs::write(&offset, "+0\n").unwrap();
    wait_until(Duration::from_secs(10), "the jump back reported", || step(&c).abs() <= 2);
    wait_until(Duration::from_secs(3 * SOAK), "wave 2 started after the soak", || !soaking(&c, 0));
    let first = soak_start.elapsed();
    assert!(first >= Duration::from_secs(SOAK - 1), "wave 1's soak lasted {first:?} of {SOAK} s");

    // Wave 2's soak: the wall clock set two hours back, and the controller SIGKILLed and started on it.
    wait_until(Duration::from_secs(120), "wave 2 soaking", || soaking(&c, 1));
    let soak_start = Instant::now();
    std::fs::write(&offset, "-7200\n").unwrap();
    c.restart(d);
    assert!(
        c.proc.log_text().contains("set back while the controller was stopped"),
        "the set-back clock was not reported"
    );
    wait_until(Duration::from_secs(3 * SOAK + 10), "wave 3 started after the soak (not two hours later)", || {
        !soaking(&c, 1)
    });
    let second = soak_start.elapsed();
    assert!(second >= Duration::from_secs(SOAK - 1), "wave 2's soak lasted {second:?} of {SOAK} s");

    run_to_end(&c, &r, Duration::from_secs(300));
    let expected =
        Expected { version: VERSION, payload_sha256: &payload_sha256(&d.join("fw.img")), phones: scale.phones };
    let checked = check_run(&c, &r, &expected, &|device| fleet.join(device));
    assert_eq!(checked.outcomes.get("timed_out"), None, "jobs timed out: {:?}", checked.outcomes);
    report(
        "clock jumps",
        &format!(
            "{} phones; wall clock +2 h and back during a {SOAK} s soak (it lasted {:.1} s), -2 h across a \
             controller SIGKILL during the next (it lasted {:.1} s); no phone offline, no job timed out; commands \
             sent again after the restart {}; outcomes {}; every check held",
            scale.phones,
            first.as_secs_f64(),
            second.as_secs_f64(),
            sends.totals().1,
            checked.outcomes_line()
        ),
    );
}
