//! Forgery through an open broker: a broker misconfigured to take anyone over TLS and let them publish anywhere,
//! so a stranger can write to any phone's command topic and any phone's report topic. The phones act only on
//! commands their controller signed for them, and the controller counts only reports for jobs it sent.

use std::path::Path;
use std::time::Duration;

use bindwave_tests::open_broker::OpenBroker;
use bindwave_tests::{sign_command, sign_command_with, update_json, wait_until, BindServer, Controller, Phone};
use serde_json::Value;

const TABLE: &[(&str, u16)] = &[("P3", 3)];

fn phone(id: &str) -> Phone<'_> {
    Phone { id, part_number: "P3", software_version: "V3 R3.0.0", minimum_software_version: "V3 R1.0.0" }
}

fn metric(c: &Controller, name_and_labels: &str) -> f64 {
    let (_, body) = c.get("/metrics");
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The phone's refusal counts, as `status.json` holds them.
fn refused(d: &Path, id: &str, reason: &str) -> u64 {
    let status: Value =
        serde_json::from_slice(&std::fs::read(d.join(id).join("status.json")).unwrap_or_default()).unwrap_or_default();
    status["commands_refused"][reason].as_u64().unwrap_or(0)
}

fn journal(d: &Path, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(d.join(id).join("journal.json")).unwrap_or_default()).unwrap_or_default()
}

fn device_version(c: &Controller, id: &str) -> String {
    let devices = c.json(&["device", "list", "-o", "json"]);
    let d = devices.as_array().unwrap().iter().find(|d| d["id"] == id).unwrap();
    d["hello"]["software_version"].as_str().unwrap().to_string()
}

#[test]
fn forged_and_replayed_commands_install_nothing_and_forged_reports_count_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Phones as in a fleet, not in lab mode: they pin a release key and (the harness's) controller key; the
    // controller adds only what that key signed.
    let key = d.join("release.key");
    let out = bindwave_tests::run(
        std::process::Command::new(bindwave_tests::bin("bindwave")).args(["image", "keygen", "--out"]).arg(&key),
    );
    bindwave_tests::assert_success(&out, &["image", "keygen"]);
    let public = d.join("release.key.pub").display().to_string();
    let open = OpenBroker::start(d);
    let mut serve: Vec<&str> = vec!["--release-key", &public];
    let on_open = open.serve_args();
    serve.extend(on_open.iter().map(String::as_str));
    let c = Controller::start_secure(d, &serve);
    // The binds come over the controller's HTTPS, its own development CA's.
    let http_ca = c.http_ca().display().to_string();
    let trust = format!("[download]\nca_file = {http_ca:?}\n[trust]\nkey_files = [{public:?}]\n");
    let login = open.phone_login();
    let mut agents = [
        phone("phone-1").start_login(d, &open.url, &login, TABLE, &trust),
        phone("phone-2").start_login(d, &open.url, &login, TABLE, &trust),
    ];
    wait_until(Duration::from_secs(30), "both phones online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
            == 2
    });
    let payload = d.join("fw.img");
    std::fs::write(&payload, "fw V3 R3.18.0 ".repeat(5000)).unwrap();
    let bind = d.join("fw.bind").display().to_string();
    let (p, k) = (payload.display().to_string(), key.display().to_string());
    c.ok(&["image", "pack", &p, "--version", "V3 R3.18.0", "--hardware-levels", "3", "--sign-key", &k, "-o", &bind]);
    let sha = c.ok(&["image", "add", &bind]);
    let bytes = std::fs::read(&bind).unwrap();
    // The stranger's own download server, which a phone that believed the forgery would fetch from.
    let server = BindServer::start(bytes.clone(), Default::default());

    // 1. Unsigned, with override: what a stranger can publish through an open broker.
    let forged = update_json("r1-phone-1", &server.url, bytes.len(), &sha, false)
        .replace("\"override\":false", "\"override\":true");
    open.publish_as_stranger("bindwave/v1/devices/phone-1/commands", forged.as_bytes());
    // 2. Signed, but by the stranger's own key.
    let stranger = sign_command_with(&[0x13; 32], "phone-1", &forged, u64::MAX);
    open.publish_as_stranger("bindwave/v1/devices/phone-1/commands", stranger.as_bytes());
    // 3. A command the controller really signed, for phone-1, replayed to phone-2.
    let genuine = sign_command("phone-1", &update_json("r1-phone-2", &server.url, bytes.len(), &sha, false));
    open.publish_as_stranger("bindwave/v1/devices/phone-2/commands", genuine.as_bytes());

    wait_until(Duration::from_secs(20), "the phones to count the refusals", || {
        refused(d, "phone-1", "unsigned") == 1
            && refused(d, "phone-1", "untrusted_key") == 1
            && refused(d, "phone-2", "signature_invalid") == 1
    });
    // Nothing was fetched, nothing is in hand, nothing was installed or reported, the versions stand.
    std::thread::sleep(Duration::from_secs(1));
    assert!(server.stats().requests.is_empty(), "{:?}", server.stats());
    for id in ["phone-1", "phone-2"] {
        let j = journal(d, id);
        assert!(j["current"].is_null(), "{id}: {j}");
        assert!(j["history"].as_array().is_none_or(|h| h.is_empty()), "{id}: {j}");
        assert!(!d.join(id).join("active").exists(), "{id} switched slots");
        assert_eq!(device_version(&c, id), "V3 R3.0.0");
    }
    for agent in &mut agents {
        assert!(agent.alive(), "{}", agent.log_text());
    }
    let log = agents[0].log_text();
    assert!(log.contains("dropping a command: it is not signed"), "{log}");
    // `bindwave-agent status` shows the count.
    let status = bindwave_tests::run(
        std::process::Command::new(bindwave_tests::bin("bindwave-agent"))
            .args(["status", "-o", "json", "--config"])
            .arg(d.join("phone-1.toml")),
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["commands_refused"]["unsigned"], 1, "{status}");

    // A rollout created and not started: its jobs were never sent. A stranger reports them done.
    let r = c.ok(&["rollout", "create", "--image", &sha, "--devices", "phone-1,phone-2"]);
    let success = r#"{"job_id":"JOB","state":"succeeded","running_version":"V3 R3.18.0","override_used":false}"#;
    let job_1 = format!("{r}-phone-1");
    open.publish_as_stranger("bindwave/v1/devices/phone-1/reports", success.replace("JOB", &job_1).as_bytes());
    // And reports phone-1's job on phone-2's topic.
    open.publish_as_stranger("bindwave/v1/devices/phone-2/reports", success.replace("JOB", &job_1).as_bytes());
    wait_until(Duration::from_secs(10), "the forged reports to be refused and counted", || {
        metric(&c, "bindwave_refused_total{what=\"job_not_sent\"}") >= 1.0
            && metric(&c, "bindwave_refused_total{what=\"other_devices_job\"}") >= 1.0
    });
    let status = c.json(&["rollout", "status", &r, "-o", "json"]);
    assert_eq!(status["counts"]["succeeded"], 0, "{status:#}");
    assert_eq!(status["counts"]["pending"], 2, "{status:#}");

    // Oversized and malformed payloads are refused and counted too, and the controller stays connected.
    open.publish_as_stranger("bindwave/v1/devices/phone-1/reports", " ".repeat(100 * 1024).as_bytes());
    open.publish_as_stranger("bindwave/v1/devices/phone-2/hello", "{not json".as_bytes());
    wait_until(Duration::from_secs(10), "oversized and malformed payloads to be counted", || {
        metric(&c, "bindwave_refused_total{what=\"oversized\"}") >= 1.0
            && metric(&c, "bindwave_refused_total{what=\"malformed\"}") >= 1.0
    });
    assert_eq!(metric(&c, "bindwave_mqtt_connected"), 1.0);

    // The same broker, the controller's own signed commands: the phones act on them.
    c.ok(&["rollout", "start", &r]);
    let mut status = Value::Null;
    wait_until(Duration::from_secs(60), "the rollout to finish", || {
        status = c.json(&["rollout", "status", &r, "-o", "json"]);
        status["rollout"]["state"] == "finished"
    });
    assert_eq!(status["counts"]["succeeded"], 2, "{status:#}");
    assert!(server.stats().requests.is_empty(), "the phones fetched from the controller only");
}
