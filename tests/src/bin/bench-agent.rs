//! The agent's footprint and speed, measured against their targets in one run: binary size, idle memory, bytes
//! transferred for a rejected bind, and, for a 1 GiB bind downloaded, verified and installed, peak memory and
//! the download + verify throughput beside `curl -s URL | sha256sum`'s from the same local HTTP server (the
//! agent's time is the one its final report gives: first request to verified file, synced).
//!
//! Run with `bench/agent.sh` (it builds what this needs in release mode first).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bindwave_tests::measure::status_kib;
use bindwave_tests::{wait_until, BindServer, Controller, Proc, ServeOptions};
use sha2::Digest;

const MIB: f64 = 1024.0 * 1024.0;

fn bind(payload_len: usize, level: u16) -> (Vec<u8>, String) {
    let payload = bindwave_tests::measure::noise(payload_len);
    let bytes = bindwave_proto::bind::pack(
        "V3 R3.18.0".parse().unwrap(),
        Some(vec![bindwave_proto::HardwareLevel(level)]),
        &payload,
    )
    .unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    (bytes, sha)
}

fn agent(dir: &std::path::Path, exe: &PathBuf, broker: &str) -> Proc {
    let state = dir.join("phone-1");
    std::fs::create_dir_all(&state).unwrap();
    let config = dir.join("phone-1.toml");
    std::fs::write(
        &config,
        format!(
            "device_id = \"phone-1\"\npart_number = \"P3\"\nsoftware_version = \"V3 R3.0.0\"\n\
             minimum_software_version = \"V3 R1.0.0\"\nstate_dir = {:?}\nreport_retry_secs = 1\n\n\
             [broker]\nurl = {broker:?}\n\n[hardware_levels]\nP3 = 3\n\n\
             [trust]\ninsecure_lab = true\ncontroller_keys = [{:?}]\n",
            state.display().to_string(),
            bindwave_tests::CONTROLLER_KEY_LINE
        ),
    )
    .unwrap();
    let mut cmd = Command::new(exe);
    cmd.arg("run").arg("--config").arg(&config);
    Proc::spawn("agent", cmd, dir)
}

fn command(c: &Controller, job: &str, url: &str, size: usize, sha: &str) {
    bindwave_tests::send_update(&c.mqtt, "phone-1", job, url, size, sha);
}

fn final_state(dir: &std::path::Path, job: &str) -> String {
    let mut state = String::new();
    wait_until(Duration::from_secs(600), &format!("the outcome of {job}"), || {
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("phone-1/journal.json")).unwrap_or_default())
                .unwrap_or_default();
        if let Some(r) = j["history"].as_array().and_then(|h| h.iter().find(|r| r["job_id"] == job)) {
            state = r["state"].as_str().unwrap_or_default().to_string();
        }
        !state.is_empty()
    });
    state
}

/// `curl -s URL | sha256sum` as a shell pipeline, timed from its start to its end; checks the digest.
fn curl_sha256(url: &str, sha: &str) -> Duration {
    let started = Instant::now();
    let out = Command::new("sh").arg("-c").arg(format!("curl -s '{url}' | sha256sum")).output().expect("sh");
    let took = started.elapsed();
    let digest = String::from_utf8_lossy(&out.stdout);
    assert!(digest.starts_with(sha), "curl | sha256sum gave {digest:?}, not {sha} (is curl installed?)");
    took
}

/// What the agent's download and verification of `job` took, as its final report says (first request to
/// verified file).
fn download_time(dir: &std::path::Path, job: &str) -> Duration {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("phone-1/journal.json")).unwrap_or_default())
            .unwrap_or_default();
    let report = j["history"].as_array().and_then(|h| h.iter().find(|r| r["job_id"] == job)).cloned();
    let millis = report.as_ref().and_then(|r| r["download"]["millis"].as_u64());
    Duration::from_millis(millis.unwrap_or_else(|| panic!("no download time in the report of {job}: {report:?}")))
}

fn row(what: &str, value: String, floor: &str, ok: bool) -> bool {
    println!("{what:<48} {value:>16}   {floor:<34} {}", if ok { "ok" } else { "OVER" });
    ok
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let agent_exe = PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "target/release-agent/bindwave-agent".into()));
    let size_gib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    println!("{:<48} {:>16}   {:<34}", "measure", "measured", "target");

    let mut all = true;
    let size = std::fs::metadata(&agent_exe).map(|m| m.len()).unwrap_or(0);
    all &= row(
        "agent binary, stripped",
        format!("{:.2} MiB", size as f64 / MIB),
        "< 5 MiB (Mender client: 9.8 MiB)",
        (size as f64) < 5.0 * MIB,
    );

    let a = agent(dir.path(), &agent_exe, &c.mqtt);
    wait_until(Duration::from_secs(20), "the agent online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().is_some_and(|d| d.iter().any(|d| d["online"] == true))
    });
    std::thread::sleep(Duration::from_secs(2));
    let idle = status_kib(a.pid(), "VmRSS:");
    all &= row(
        "agent idle RSS",
        format!("{:.2} MiB", idle as f64 / 1024.0),
        "< 8 MiB (Mender: 31.5, SWUpdate: ~20)",
        (idle as f64) < 8.0 * 1024.0,
    );

    // A 64 MiB bind for another hardware level, served at a steady pace so what was sent is what was read.
    let (bytes, sha) = bind(64 << 20, 9);
    let server = BindServer::start(
        bytes.clone(),
        ServeOptions { chunk: 16 * 1024, pause: Duration::from_millis(1), ..Default::default() },
    );
    command(&c, "bench-reject", &server.url, bytes.len(), &sha);
    let state = final_state(dir.path(), "bench-reject");
    std::thread::sleep(Duration::from_millis(500));
    let sent = server.stats().bytes_sent;
    all &= row(
        &format!("bytes transferred, rejected {} MiB bind ({state})", bytes.len() >> 20),
        format!("{sent} B"),
        "header + socket buffers, < 1 MiB",
        state == "rejected" && sent < 1 << 20,
    );
    drop(bytes);

    // A large bind downloaded, verified and installed, twice, each run beside `curl -s URL | sha256sum` from
    // the same server (which holds the bind in memory, so no reader finds the file colder than another).
    let (bytes, sha) = bind(size_gib << 30, 3);
    let server = BindServer::start(bytes.clone(), ServeOptions::default());
    let len = bytes.len();
    drop(bytes);
    let (mut curl, mut agent_dl, mut agent_all) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut state = String::new();
    for run in 1..=2 {
        curl = curl.min(curl_sha256(&server.url, &sha));
        let job = format!("bench-large-{run}");
        let started = Instant::now();
        command(&c, &job, &server.url, len, &sha);
        state = final_state(dir.path(), &job);
        agent_all = agent_all.min(started.elapsed());
        agent_dl = agent_dl.min(download_time(dir.path(), &job));
    }
    let peak = status_kib(a.pid(), "VmHWM:");
    all &= row(
        &format!("agent peak RSS, {size_gib} GiB bind ({state})"),
        format!("{:.2} MiB", peak as f64 / 1024.0),
        "< 16 MiB",
        state == "succeeded" && (peak as f64) < 16.0 * 1024.0,
    );
    let rate = |took: Duration| len as f64 / MIB / took.as_secs_f64();
    let what = format!("curl -s URL | sha256sum, {size_gib} GiB (best of 2)");
    println!("{what:<48} {:>16}   {:<34}", format!("{:.0} MiB/s", rate(curl)), "the reference, same server");
    all &= row(
        &format!("agent download + verify, {size_gib} GiB (best of 2)"),
        format!("{:.0} MiB/s", rate(agent_dl)),
        &format!(">= 0.9 x curl | sha256sum ({:.0} MiB/s)", 0.9 * rate(curl)),
        rate(agent_dl) >= 0.9 * rate(curl),
    );
    let (what, ratio) = ("  ratio, agent / curl | sha256sum", rate(agent_dl) / rate(curl));
    println!("{what:<48} {ratio:>16.2}");
    let (what, all_in) = ("  agent, command to installed (slot copy, sync)", rate(agent_all));
    println!("{what:<48} {:>16}", format!("{all_in:.0} MiB/s"));
    drop(a);
    if !all {
        std::process::exit(1);
    }
}
