//! `bindwave simulate`'s fault mix through a real controller and broker: the outcomes the controller records are
//! the ones the mix drew, phone by phone.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bindwave_tests::{bin, wait_until, Controller, Proc};
use serde_json::Value;

const N: usize = 24;
/// The throttled phones' download rate, bytes a second.
const SLOW_RATE: u64 = 20_000;

fn online(c: &Controller) -> Vec<String> {
    let devices = c.json(&["device", "list", "-o", "json"]);
    let list = devices.as_array().cloned().unwrap_or_default();
    list.iter().filter(|d| d["online"] == true).filter_map(|d| d["id"].as_str().map(str::to_string)).collect()
}

fn ids(faults: &Value, kind: &str) -> Vec<String> {
    faults[kind].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// The job ids a phone's journal remembers finishing.
fn finished_jobs(fleet: &Path, device: &str) -> Vec<String> {
    let j: Value = serde_json::from_slice(&std::fs::read(fleet.join(device).join("journal.json")).unwrap_or_default())
        .unwrap_or_default();
    let history = j["history"].as_array().cloned().unwrap_or_default();
    history.iter().filter_map(|r| r["job_id"].as_str().map(str::to_string)).collect()
}

#[test]
fn a_fault_mix_ends_in_the_outcomes_it_drew() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start(d);
    let fleet_dir = d.join("fleet");
    let mut cmd = Command::new(bin("bindwave"));
    cmd.args(["simulate", "--devices", &N.to_string(), "--broker", &c.mqtt, "--state", "nosync", "--state-dir"])
        .arg(&fleet_dir)
        .arg("--controller-key")
        .arg(c.data_dir.join("controller.key.pub"))
        .args(["--seed", "5", "--fail-install", "3", "--offline", "10%", "--offline-after", "8s"])
        .args(["--slow-download", "3", "--slow-rate", &SLOW_RATE.to_string(), "--crash-mid-update", "4"]);
    let fleet = Proc::spawn("fleet", cmd, d);

    wait_until(Duration::from_secs(60), "every phone online", || online(&c).len() == N);
    let faults: Value = serde_json::from_slice(&std::fs::read(fleet_dir.join("faults.json")).unwrap()).unwrap();
    let (failing, offline, slow, crashing) = (
        ids(&faults, "fail_install"),
        ids(&faults, "offline"),
        ids(&faults, "slow_download"),
        ids(&faults, "crash_mid_update"),
    );
    assert_eq!((failing.len(), offline.len(), slow.len(), crashing.len()), (3, 2, 3, 4), "{faults:#}");
    // The offline phones drop off without a goodbye: the broker tells the controller through their last will.
    wait_until(Duration::from_secs(30), "the offline phones to drop off", || {
        let on = online(&c);
        on.len() == N - offline.len() && offline.iter().all(|id| !on.contains(id))
    });

    let image = c.pack_and_add(d, "fw", "V3 R6.0.0", None);
    let bind_len = std::fs::metadata(d.join("fw.bind")).unwrap().len();
    let r = c.ok(&[
        "rollout",
        "create",
        "--image",
        &image,
        "--all",
        "--waves",
        "100%",
        "--success-ratio",
        "50%",
        "--failure-threshold",
        "100%",
        "--device-timeout",
        "25s",
        "--start",
    ]);
    wait_until(Duration::from_secs(120), "the rollout to finish", || {
        c.json(&["rollout", "status", &r, "-o", "json"])["rollout"]["state"] == "finished"
    });
    let s = c.json(&["rollout", "status", &r, "-o", "json"]);
    let jobs = s["jobs"].as_array().unwrap();
    let job = |id: &str| jobs.iter().find(|j| j["device"] == id).unwrap_or_else(|| panic!("no job for {id}"));
    let phase = |id: &str| job(id)["phase"]["phase"].as_str().unwrap().to_string();

    for id in &failing {
        assert_eq!(phase(id), "failed", "{:#}", job(id));
        let reason = &job(id)["phase"]["reason"];
        assert_eq!(reason["code"], "install_failed", "{reason:#}");
        assert!(reason.to_string().contains("simulated installer failure"), "the installer's own words: {reason:#}");
    }
    for id in &offline {
        assert_eq!(phase(id), "timed_out", "{:#}", job(id));
    }
    for id in &slow {
        assert_eq!(phase(id), "succeeded", "{:#}", job(id));
        // Throttled: the bind cannot have arrived faster than the rate allows (less the first piece).
        let took = job(id)["updated_at"].as_u64().unwrap() - job(id)["sent_at"].as_u64().unwrap();
        let floor = (bind_len - SLOW_RATE / 10) * 1000 / SLOW_RATE;
        assert!(took >= floor, "{id} took {took} ms for {bind_len} bytes at {SLOW_RATE} B/s");
    }
    // Each crashing phone lost power once mid-update, started again on the same state, and ended with one
    // outcome, the true one.
    let log = fleet.log_text();
    let cuts: Vec<&str> = log.lines().filter(|l| l.contains("simulated: power cut")).collect();
    assert_eq!(cuts.len(), crashing.len(), "{cuts:#?}");
    for id in &crashing {
        assert!(cuts.iter().any(|l| l.contains(id.as_str())), "{id} never lost power: {cuts:#?}");
        assert_eq!(phase(id), "succeeded", "{:#}", job(id));
        let jobs = finished_jobs(&fleet_dir, id);
        assert_eq!(jobs.iter().filter(|j| j.starts_with(&format!("{r}-"))).count(), 1, "{id}: {jobs:?}");
    }
    let faulty: Vec<&String> = failing.iter().chain(&offline).chain(&slow).chain(&crashing).collect();
    let healthy: Vec<String> =
        (0..N).map(|i| format!("phone-{:05}", i + 1)).filter(|id| !faulty.contains(&id)).collect();
    assert_eq!(healthy.len(), N - 12);
    assert!(healthy.iter().all(|id| phase(id) == "succeeded"), "{:#}", s["counts"]);
    assert_eq!(s["counts"]["succeeded"], N - failing.len() - offline.len(), "{:#}", s["counts"]);
    assert_eq!(s["counts"]["failed"], failing.len());
    assert_eq!(s["counts"]["timed_out"], offline.len());
    // The simulator says what each phone costs.
    wait_until(Duration::from_secs(30), "a memory line", || fleet.log_text().contains("KiB a phone now"));
}

/// A phone that drops off for a while gets its command when it comes back, and its outcome is true.
#[test]
fn a_phone_off_the_network_for_a_while_updates_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start(d);
    let mut cmd = Command::new(bin("bindwave"));
    cmd.args(["simulate", "--devices", "4", "--broker", &c.mqtt, "--state-dir"])
        .arg(d.join("fleet"))
        .arg("--controller-key")
        .arg(c.data_dir.join("controller.key.pub"))
        .args(["--offline", "1", "--offline-after", "8s", "--offline-for", "6s"]);
    let fleet = Proc::spawn("fleet", cmd, d);
    wait_until(Duration::from_secs(60), "every phone online", || online(&c).len() == 4);
    let faults: Value = serde_json::from_slice(&std::fs::read(d.join("fleet").join("faults.json")).unwrap()).unwrap();
    let away = ids(&faults, "offline").pop().unwrap();
    wait_until(Duration::from_secs(30), "the phone to drop off", || !online(&c).contains(&away));

    let image = c.pack_and_add(d, "fw", "V3 R6.0.0", None);
    let r = c.ok(&["rollout", "create", "--image", &image, "--all", "--waves", "100%", "--start"]);
    let status = || c.json(&["rollout", "status", &r, "-o", "json"]);
    wait_until(Duration::from_secs(60), "the rollout to finish", || status()["rollout"]["state"] == "finished");
    let s = status();
    assert_eq!(s["counts"]["succeeded"], 4, "{:#}", s["counts"]);
    assert!(fleet.log_text().contains("simulated: back on the network"));
    assert!(online(&c).contains(&away));
}

/// Phones killed together with a controller that embeds the broker: their last wills died with the broker,
/// and only the controller comes back. It does not show them online from its store: online state is
/// re-established after a restart, and none of them re-establishes it. Phones started again come back online.
#[test]
fn phones_that_died_with_the_broker_are_not_shown_online_after_a_restart() {
    const PHONES: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Controller::start(d);
    let simulate = |c: &Controller| {
        let mut cmd = Command::new(bin("bindwave"));
        cmd.args(["simulate", "--devices", &PHONES.to_string(), "--broker", &c.mqtt, "--state", "nosync"])
            .arg("--state-dir")
            .arg(d.join("fleet"))
            .arg("--controller-key")
            .arg(c.data_dir.join("controller.key.pub"));
        Proc::spawn("fleet", cmd, d)
    };
    let mut fleet = simulate(&c);
    wait_until(Duration::from_secs(60), "every phone online", || online(&c).len() == PHONES);
    fleet.kill();
    c.restart(d);
    let devices = c.json(&["device", "list", "-o", "json"]);
    assert_eq!(devices.as_array().map(Vec::len), Some(PHONES), "the inventory is kept: {devices:#}");
    assert_eq!(online(&c), Vec::<String>::new(), "dead phones shown online after the restart");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(online(&c), Vec::<String>::new(), "dead phones came back online by themselves");
    let _fleet = simulate(&c);
    wait_until(Duration::from_secs(60), "the phones back online", || online(&c).len() == PHONES);
}
