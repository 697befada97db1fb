//! The agent against servers that misbehave and power cuts: early rejection, resumed downloads, restarts at
//! any point.

use std::path::Path;
use std::time::Duration;

use bindwave_proto::bind::pack;
use bindwave_proto::HardwareLevel;
use bindwave_tests::{wait_until, BindServer, Controller, Phone, Proc, ServeOptions};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

const TABLE: &[(&str, u16)] = &[("P3", 3)];
const FAST_RETRIES: &str = "[download]\nattempts = 10\nbackoff_ms = 50\nmax_backoff_secs = 1\n";

fn phone() -> Phone<'static> {
    Phone { id: "phone-1", part_number: "P3", software_version: "V3 R3.0.0", minimum_software_version: "V3 R1.0.0" }
}

/// A bind of `size` payload bytes for hardware levels `levels`, and its whole-file digest.
fn bind(size: usize, levels: &[u16]) -> (Vec<u8>, Vec<u8>, String) {
    let payload: Vec<u8> = (0..size as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let bytes =
        pack("V3 R3.18.0".parse().unwrap(), Some(levels.iter().copied().map(HardwareLevel).collect()), &payload)
            .unwrap();
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    (payload, bytes, sha)
}

/// Publishes an update command to the phone, as the controller would.
fn command(broker: &str, job: &str, url: &str, size: usize, sha: &str) {
    bindwave_tests::send_update(broker, "phone-1", job, url, size, sha);
}

/// The phone's final report of `job`, from its journal, once there is one.
fn outcome(state: &Path, job: &str, secs: u64) -> Value {
    let mut found = Value::Null;
    wait_until(Duration::from_secs(secs), &format!("a final report of {job}"), || {
        let j: Value =
            serde_json::from_slice(&std::fs::read(state.join("journal.json")).unwrap_or_default()).unwrap_or_default();
        if let Some(r) = j["history"].as_array().and_then(|h| h.iter().find(|r| r["job_id"] == job)) {
            found = r.clone();
        }
        !found.is_null()
    });
    found
}

fn online(c: &Controller) {
    wait_until(Duration::from_secs(20), "the phone online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().any(|d| d["online"] == true)
    });
}

#[test]
fn an_incompatible_bind_is_rejected_after_its_header_and_the_rest_never_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, FAST_RETRIES);
    online(&c);
    let (_, bytes, sha) = bind(8 << 20, &[9]);
    // Throttled, so what the server managed to send is what the phone read.
    let server = BindServer::start(
        bytes.clone(),
        ServeOptions { chunk: 16 * 1024, pause: Duration::from_millis(2), ..Default::default() },
    );
    command(&c.mqtt, "job-reject", &server.url, bytes.len(), &sha);
    let r = outcome(&dir.path().join("phone-1"), "job-reject", 30);
    assert_eq!(r["state"], "rejected");
    assert_eq!(r["reason"]["code"], "hardware_level_incompatible");
    std::thread::sleep(Duration::from_millis(300));
    let sent = server.stats().bytes_sent;
    println!("early reject: {sent} of {} bytes transferred", bytes.len());
    assert!(sent < (bytes.len() / 10) as u64, "{sent} bytes of {} were sent for a rejected bind", bytes.len());
}

#[test]
fn a_dropped_download_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, FAST_RETRIES);
    online(&c);
    let (payload, bytes, sha) = bind(2 << 20, &[3]);
    // The first three responses drop after 300 KiB each.
    let server =
        BindServer::start(bytes.clone(), ServeOptions { drops: 3, drop_after: 300 * 1024, ..Default::default() });
    command(&c.mqtt, "job-resume", &server.url, bytes.len(), &sha);
    let r = outcome(&dir.path().join("phone-1"), "job-resume", 60);
    assert_eq!(r["state"], "succeeded", "{r}");
    let stats = server.stats();
    assert_eq!(stats.requests.len(), 4, "{:?}", stats.requests);
    for (i, (range, if_range)) in stats.requests.iter().enumerate().skip(1) {
        assert_eq!(range.as_deref(), Some(format!("bytes={}-", i * 300 * 1024).as_str()), "request {i}");
        assert_eq!(if_range.as_deref(), Some("\"v1\""), "request {i} carries the validator");
    }
    assert_eq!(stats.bytes_sent, bytes.len() as u64, "no byte was downloaded twice");
    let slot = dir.path().join("phone-1/slots/b/payload");
    assert_eq!(std::fs::read(slot).unwrap(), payload);
}

#[test]
fn a_file_that_changed_on_the_server_is_downloaded_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, FAST_RETRIES);
    online(&c);
    let (_, bytes, sha) = bind(1 << 20, &[3]);
    let opts = ServeOptions { drops: 1, drop_after: 200 * 1024, ..Default::default() };
    let etag = opts.etag.clone();
    let server = BindServer::start(bytes.clone(), opts);
    // The validator changes once the first response is under way (its headers sent with the old one): the
    // resume must not splice two files.
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            // Closely watched: the agent asks again within a few tens of milliseconds.
            let start = std::time::Instant::now();
            while server.stats().bytes_sent == 0 && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(1));
            }
            *etag.lock().unwrap() = "\"v2\"".into();
        });
        command(&c.mqtt, "job-changed", &server.url, bytes.len(), &sha);
        outcome(&dir.path().join("phone-1"), "job-changed", 60)
    });
    assert_eq!(r["state"], "succeeded", "{r}");
    let stats = server.stats();
    assert!(stats.bytes_sent >= bytes.len() as u64 + 200 * 1024, "the second response sent the whole file: {stats:?}");
}

#[test]
fn a_server_that_never_answers_well_ends_the_job_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, "[download]\nattempts = 3\nbackoff_ms = 20\n");
    online(&c);
    let (_, bytes, sha) = bind(100_000, &[3]);
    let server =
        BindServer::start(bytes.clone(), ServeOptions { drops: usize::MAX, drop_after: 1000, ..Default::default() });
    command(&c.mqtt, "job-flaky", &server.url, bytes.len(), &sha);
    let r = outcome(&dir.path().join("phone-1"), "job-flaky", 30);
    assert_eq!(r["state"], "failed");
    assert_eq!(r["reason"]["code"], "download_failed");
    assert_eq!(r["reason"]["attempts"], 3);
    assert!(r["reason"]["detail"].as_str().unwrap().contains(&format!("of {} bytes", bytes.len())), "{r}");
    // The partial file is gone.
    assert_eq!(std::fs::read_dir(dir.path().join("phone-1/downloads")).unwrap().count(), 0);
}

/// A download that would take far longer than the rollout waits is abandoned when the command's time limit
/// runs out: the phone reports `timed_out` with how far it got, keeps what it runs, and leaves no partial file.
#[test]
fn a_job_past_its_time_limit_is_abandoned_and_reported_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, FAST_RETRIES);
    online(&c);
    let (_, bytes, sha) = bind(1 << 20, &[3]);
    // About 10 KiB/s: the whole file would take close to two minutes.
    let server = BindServer::start(
        bytes.clone(),
        ServeOptions { chunk: 1024, pause: Duration::from_millis(100), ..Default::default() },
    );
    let cmd = bindwave_tests::update_json("job-slow", &server.url, bytes.len(), &sha, false)
        .replace("\"override\":false", "\"override\":false,\"timeout_secs\":2");
    bindwave_tests::send_command(&c.mqtt, "phone-1", "job-slow", &bindwave_tests::sign_command("phone-1", &cmd));
    let r = outcome(&dir.path().join("phone-1"), "job-slow", 30);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["reason"]["code"], "timed_out", "{r}");
    assert_eq!(r["reason"]["limit_secs"], 2, "{r}");
    assert_eq!(r["reason"]["during"], "downloading", "{r}");
    let received = r["reason"]["received"].as_u64().unwrap();
    assert!(received > 0 && received < bytes.len() as u64, "{r}");
    assert!(r["message"].as_str().unwrap().contains("timed out after 2 s"), "{r}");
    assert_eq!(r["running_version"], "V3 R3.0.0", "{r}");
    assert_eq!(std::fs::read_dir(dir.path().join("phone-1/downloads")).unwrap().count(), 0);
}

/// A power cut at many points of a job: each time the agent comes back it goes on, and in the end it reports
/// one true outcome, with the new image whole in its slot, installed once.
#[test]
fn killed_at_many_points_the_agent_ends_with_one_true_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let state = dir.path().join("phone-1");
    let (payload, bytes, sha) = bind(3 << 20, &[3]);
    // About 0.6 s of download, so the kills land all over it.
    let server = BindServer::start(
        bytes.clone(),
        ServeOptions { chunk: 64 * 1024, pause: Duration::from_millis(12), ..Default::default() },
    );
    let mut agent: Proc = phone().start_with(dir.path(), &c.mqtt, TABLE, FAST_RETRIES);
    online(&c);
    command(&c.mqtt, "job-power", &server.url, bytes.len(), &sha);
    for delay_ms in [30, 90, 150, 60, 200, 120, 250, 40, 180, 300] {
        std::thread::sleep(Duration::from_millis(delay_ms));
        agent.kill();
        // The active slot is never half written: if it exists, it is whole and names its job.
        if let Ok(a) = std::fs::read(state.join("active")) {
            let a: Value = serde_json::from_slice(&a).expect("a whole active record");
            assert_eq!(a["job_id"], "job-power");
            assert_eq!(std::fs::read(state.join("slots/b/payload")).unwrap(), payload);
        }
        agent = phone().start_with(dir.path(), &c.mqtt, TABLE, FAST_RETRIES);
    }
    let r = outcome(&state, "job-power", 60);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["running_version"], "V3 R3.18.0");
    let active: Value = serde_json::from_slice(&std::fs::read(state.join("active")).unwrap()).unwrap();
    assert_eq!((active["slot"].as_str(), active["job_id"].as_str()), (Some("b"), Some("job-power")), "installed once");
    assert_eq!(std::fs::read(state.join("slots/b/payload")).unwrap(), payload);
    let sent = server.stats().bytes_sent;
    println!("10 power cuts: {sent} bytes transferred for a {}-byte bind", bytes.len());
    assert!(sent < 2 * bytes.len() as u64, "resumes, not restarts: {sent} bytes for {}", bytes.len());
    drop(agent);
}

#[test]
fn the_probe_wins_over_the_part_number_and_the_conflict_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let probe = dir.path().join("hw-level");
    std::fs::write(&probe, "2\n").unwrap();
    let extra = format!("[hardware_probe]\nfile = {:?}\n\n{FAST_RETRIES}", probe.display().to_string());
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, &extra);
    online(&c);
    let hello = &c.json(&["device", "list", "-o", "json"])[0]["hello"];
    assert_eq!(hello["hardware_level"], 2);
    assert_eq!(hello["hardware_level_source"], "probe");
    assert_eq!(
        hello["hardware_level_conflict"],
        serde_json::json!({"probe": 2, "other": 3, "other_source": "part_number"})
    );
    // A bind for level 3 (what the part number says) is rejected: the probe wins, and the rejection says why.
    let (_, bytes, sha) = bind(50_000, &[3]);
    let server = BindServer::start(bytes.clone(), ServeOptions::default());
    command(&c.mqtt, "job-probe", &server.url, bytes.len(), &sha);
    let r = outcome(&dir.path().join("phone-1"), "job-probe", 30);
    assert_eq!(r["state"], "rejected");
    assert_eq!(r["reason"]["code"], "hardware_level_incompatible");
    assert_eq!(r["reason"]["device_level"], 2);
    assert_eq!(r["reason"]["level_source"], "probe");
    assert_eq!(r["reason"]["level_conflict"]["other"], 3);
}

#[test]
fn a_failed_health_check_switches_back_and_reports_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    // Healthy on anything but the new version.
    let extra = "[health]\ncheck_command = [\"sh\", \"-c\", \"test \\\"$BINDWAVE_VERSION\\\" != 'V3 R3.18.0'\"]\n";
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, extra);
    online(&c);
    let (_, bytes, sha) = bind(50_000, &[3]);
    let server = BindServer::start(bytes.clone(), ServeOptions::default());
    command(&c.mqtt, "job-unhealthy", &server.url, bytes.len(), &sha);
    let state = dir.path().join("phone-1");
    let r = outcome(&state, "job-unhealthy", 30);
    assert_eq!(r["state"], "rolled_back", "{r}");
    assert_eq!(r["reason"]["code"], "health_check_failed");
    assert_eq!(r["running_version"], "V3 R3.0.0", "back on the factory version");
    assert!(!state.join("active").exists(), "the factory software is active again");
    wait_until(Duration::from_secs(10), "hello with the old version", || {
        c.json(&["device", "list", "-o", "json"])[0]["hello"]["software_version"] == "V3 R3.0.0"
    });
}

#[test]
fn success_waits_for_the_restart_and_the_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let state = dir.path().join("phone-1");
    let marker = dir.path().join("checked");
    // The reboot command cuts the agent off as a phone's reboot would; the health check leaves a mark.
    let extra = format!(
        "[health]\nreboot_command = [\"sh\", \"-c\", \"kill -9 $PPID\"]\ncheck_command = [\"sh\", \"-c\", \"echo $BINDWAVE_VERSION > {}\"]\n",
        marker.display()
    );
    let mut agent = phone().start_with(dir.path(), &c.mqtt, TABLE, &extra);
    online(&c);
    let (_, bytes, sha) = bind(50_000, &[3]);
    let server = BindServer::start(bytes.clone(), ServeOptions::default());
    command(&c.mqtt, "job-reboot", &server.url, bytes.len(), &sha);
    wait_until(Duration::from_secs(30), "the agent to reboot", || !agent.alive());
    // Installed and switched, but not reported as succeeded before the restart.
    let j: Value = serde_json::from_slice(&std::fs::read(state.join("journal.json")).unwrap()).unwrap();
    assert_eq!(j["awaiting_health"]["job_id"], "job-reboot", "{j:#}");
    assert!(j["history"].as_array().unwrap().is_empty(), "{j:#}");
    assert!(!marker.exists());
    // The phone comes back up: the agent checks health, then reports success.
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, &extra);
    let r = outcome(&state, "job-reboot", 30);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "V3 R3.18.0");
}

#[test]
fn the_indicator_follows_the_job_and_status_tells_a_technician() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let lights = dir.path().join("leds.log");
    let extra = format!(
        "[indicator]\ncommand = [\"sh\", \"-c\", \"echo $BINDWAVE_STATE $BINDWAVE_PROGRESS >> {}\"]\n",
        lights.display()
    );
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, &extra);
    online(&c);
    let (_, bytes, sha) = bind(1 << 20, &[3]);
    let server = BindServer::start(
        bytes.clone(),
        ServeOptions { chunk: 64 * 1024, pause: Duration::from_millis(15), ..Default::default() },
    );
    command(&c.mqtt, "job-lights", &server.url, bytes.len(), &sha);
    let state = dir.path().join("phone-1");
    outcome(&state, "job-lights", 30);
    wait_until(Duration::from_secs(10), "the indicator to show the outcome", || {
        std::fs::read_to_string(&lights).unwrap_or_default().lines().last() == Some("succeeded")
    });
    let shown = std::fs::read_to_string(&lights).unwrap();
    let states: Vec<&str> = shown.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(states.first(), Some(&"idle"), "{shown}");
    assert!(states.contains(&"downloading"), "{shown}");
    let pos = |s: &str| states.iter().position(|x| *x == s).unwrap_or(usize::MAX);
    assert!(pos("downloading") < pos("succeeded"), "{shown}");

    let out = std::process::Command::new(bindwave_tests::bin("bindwave-agent"))
        .args(["status", "--config"])
        .arg(dir.path().join("phone-1.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("running           V3 R3.18.0 (slot b)"), "{text}");
    assert!(text.contains("state             succeeded (job job-lights)"), "{text}");
    assert!(text.contains("last outcome      job-lights succeeded"), "{text}");
    assert!(text.contains("hardware level    3 (from the part_number)"), "{text}");
}

#[test]
fn a_configured_installer_gets_the_verified_payload_and_its_exit_status_decides() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let flashed = dir.path().join("flashed.img");
    // The phone's own installer copies the payload it is given; it refuses jobs named "job-refused".
    let extra = format!(
        "[installer]\ncommand = [\"sh\", \"-c\", \"test \\\"$BINDWAVE_JOB\\\" != job-refused && cp {{payload}} {}\"]\n",
        flashed.display()
    );
    let _agent = phone().start_with(dir.path(), &c.mqtt, TABLE, &extra);
    online(&c);
    let state = dir.path().join("phone-1");
    let (payload, bytes, sha) = bind(200_000, &[3]);
    let server = BindServer::start(bytes.clone(), ServeOptions::default());
    command(&c.mqtt, "job-refused", &server.url, bytes.len(), &sha);
    let r = outcome(&state, "job-refused", 30);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["reason"]["code"], "install_failed");
    assert!(r["reason"]["detail"].as_str().unwrap().contains("the installer failed"), "{r}");
    assert!(!state.join("active").exists(), "a refused install switches nothing");
    command(&c.mqtt, "job-flash", &server.url, bytes.len(), &sha);
    let r = outcome(&state, "job-flash", 30);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(std::fs::read(&flashed).unwrap(), payload, "the installer got the verified payload");
}

/// The broker goes away in the middle of a job: the job goes on, and its outcome arrives once the broker is
/// back.
#[test]
fn a_job_goes_on_while_the_broker_is_away_and_its_outcome_arrives_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut broker = bindwave_tests::Mosquitto::start(d);
    let _agent = phone().start_with(d, &broker.url, TABLE, FAST_RETRIES);
    let (_, bytes, sha) = bind(1 << 20, &[3]);
    // About a second of download.
    let server = BindServer::start(
        bytes.clone(),
        ServeOptions { chunk: 32 * 1024, pause: Duration::from_millis(30), ..Default::default() },
    );
    std::thread::sleep(Duration::from_millis(500));
    command(&broker.url, "job-offline", &server.url, bytes.len(), &sha);
    std::thread::sleep(Duration::from_millis(200));
    broker.proc.kill();
    // The job finishes with no broker.
    let state = d.join("phone-1");
    let r = outcome(&state, "job-offline", 30);
    assert_eq!(r["state"], "succeeded", "{r}");
    // The broker comes back on the same port: the outcome is delivered.
    let port: u16 = broker.url.rsplit(':').next().unwrap().parse().unwrap();
    broker = bindwave_tests::Mosquitto::start_on(d, port);
    let addr = broker.url.trim_start_matches("mqtt://").to_string();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let (client, mut conn) = Client::new(MqttOptions::new("test-listener", host, port.parse().unwrap()), 10);
    client.subscribe("bindwave/v1/devices/phone-1/reports", QoS::AtLeastOnce).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut delivered = None;
    for event in conn.iter() {
        assert!(std::time::Instant::now() < deadline, "the outcome never arrived");
        if let Ok(Event::Incoming(Packet::Publish(p))) = event {
            let v: Value = serde_json::from_slice(&p.payload).unwrap_or_default();
            if v["job_id"] == "job-offline" && v["state"] == "succeeded" {
                delivered = Some(v);
                break;
            }
        }
    }
    assert_eq!(delivered.unwrap()["running_version"], "V3 R3.18.0");
}

/// The phone's default access settings: a rollout whose commands carry only the file name, fetched over
/// HTTPS from the fleet's own server (a private CA, a user and password).
#[test]
fn use_defaults_fetches_the_file_name_from_the_default_https_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_ca(d);
    let root = d.join("www/binds");
    std::fs::create_dir_all(&root).unwrap();
    let server = r#"
import base64, functools, http.server, ssl, sys
port_file, root, cert, key, auth = sys.argv[1:]
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(auth.encode()).decode():
            self.send_response(401); self.send_header("WWW-Authenticate", "Basic"); self.end_headers(); return
        super().do_GET()
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=root))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
open(port_file, "w").write(str(srv.server_address[1]))
srv.serve_forever()
"#;
    let mut py = std::process::Command::new("python3");
    py.arg("-c")
        .arg(server)
        .arg(d.join("port"))
        .arg(d.join("www"))
        .arg(d.join("srv.pem"))
        .arg(d.join("srv.key"))
        .arg("phone:s3cret");
    let _https = Proc::spawn("https", py, d);
    wait_until(Duration::from_secs(10), "the HTTPS server", || {
        d.join("port").exists() && !std::fs::read_to_string(d.join("port")).unwrap().is_empty()
    });
    let port = std::fs::read_to_string(d.join("port")).unwrap();

    let c = Controller::start(d);
    let extra = format!(
        "[access]\nprotocol = \"https\"\nserver = \"127.0.0.1\"\nport = {port}\nuser = \"phone\"\npassword = \"s3cret\"\npath = \"/binds\"\n\n\
         [download]\nca_file = {:?}\nattempts = 2\nbackoff_ms = 50\n",
        d.join("ca.pem").display().to_string()
    );
    let _agent = phone().start_with(d, &c.mqtt, TABLE, &extra);
    online(&c);
    roll_out_by_file_name(&c, d, &root);
}

/// The same through FTP: the default access settings name an FTP server (a real one, pyftpdlib) with a user
/// and password; the phone fetches the file name the command carries, and installs it.
#[test]
fn use_defaults_fetches_from_the_default_ftp_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = d.join("ftp");
    std::fs::create_dir_all(&root).unwrap();
    let setup = r#"
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler as Handler
auth = DummyAuthorizer()
auth.add_user("phone", "s3cret", sys.argv[2], perm="elr")
Handler.authorizer = auth
"#;
    let (_ftpd, port) = bindwave_tests::ftp_server(d, "ftpd", setup, &[root.as_os_str()]);

    let c = Controller::start(d);
    let extra = format!(
        "[access]\nprotocol = \"ftp\"\nserver = \"127.0.0.1\"\nport = {port}\nuser = \"phone\"\npassword = \"s3cret\"\npath = \"/\"\n\n\
         [download]\nattempts = 2\nbackoff_ms = 50\n"
    );
    let _agent = phone().start_with(d, &c.mqtt, TABLE, &extra);
    online(&c);
    roll_out_by_file_name(&c, d, &root);
    assert_eq!(std::fs::read(d.join("phone-1/slots/b/payload")).unwrap(), std::fs::read(d.join("fw.img")).unwrap());
}

/// An FTP download cut by a power cut resumes with REST where it stopped.
#[test]
fn an_ftp_download_resumes_after_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = d.join("ftp");
    std::fs::create_dir_all(&root).unwrap();
    // A slow server (about 1 MiB/s), so the power cut lands mid-transfer; it logs the REST offsets it is asked for.
    let server = r#"
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
root, log = sys.argv[2], sys.argv[3]
class Handler(FTPHandler):
    def ftp_REST(self, line):
        open(log, "a").write(line + "\n")
        return super().ftp_REST(line)
dtp = ThrottledDTPHandler
dtp.read_limit = 1024 * 1024
dtp.write_limit = 1024 * 1024
auth = DummyAuthorizer()
auth.add_anonymous(root)
Handler.authorizer = auth
Handler.dtp_handler = dtp
"#;
    let rest_log = d.join("rest.log");
    let (_ftpd, port) = bindwave_tests::ftp_server(d, "ftpd", server, &[root.as_os_str(), rest_log.as_os_str()]);

    let c = Controller::start(d);
    let extra = format!("[access]\nprotocol = \"ftp\"\nserver = \"127.0.0.1\"\nport = {port}\n\n{FAST_RETRIES}");
    let mut agent = phone().start_with(d, &c.mqtt, TABLE, &extra);
    online(&c);
    let (payload, bytes, sha) = bind(3 << 20, &[3]);
    std::fs::write(root.join("fw.bind"), &bytes).unwrap();
    let cmd = bindwave_tests::update_json("job-ftp", "fw.bind", bytes.len(), &sha, true);
    bindwave_tests::send_command(&c.mqtt, "phone-1", "job-ftp", &bindwave_tests::sign_command("phone-1", &cmd));
    let partial = d.join("phone-1/downloads/job-ftp.bind");
    wait_until(Duration::from_secs(20), "part of the download", || {
        std::fs::metadata(&partial).map(|m| m.len() > 500_000).unwrap_or(false)
    });
    agent.kill();
    let _agent = phone().start_with(d, &c.mqtt, TABLE, &extra);
    let r = outcome(&d.join("phone-1"), "job-ftp", 60);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(std::fs::read(d.join("phone-1/slots/b/payload")).unwrap(), payload);
    let rest = std::fs::read_to_string(d.join("rest.log")).unwrap_or_default();
    let offset: u64 = rest.lines().next().unwrap_or_else(|| panic!("no REST was asked for")).trim().parse().unwrap();
    assert!(offset > 500_000, "resumed at {offset}");
}

/// A fleet CA (`ca.pem`) and a server certificate it signed for localhost and 127.0.0.1 (`srv.pem`, `srv.key`).
fn fleet_ca(d: &Path) {
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").arg("-c").arg(script).current_dir(d).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=fleet-ca 2>/dev/null");
    sh("openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null");
    sh("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext.cnf && \
        openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null");
}

/// FTPS: the default access settings name an FTP server that demands TLS on the control and data connections
/// (pyftpdlib's TLS handler, with a certificate from the fleet's CA). The phone with the CA fetches and installs;
/// a phone without it refuses the server's certificate at once and says what to set.
#[test]
fn use_defaults_fetches_from_the_default_ftps_server_and_an_untrusted_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet_ca(d);
    let root = d.join("ftps");
    std::fs::create_dir_all(&root).unwrap();
    let server = r#"
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
root, cert, key = sys.argv[2], sys.argv[3], sys.argv[4]
class Handler(TLS_FTPHandler):
    certfile, keyfile = cert, key
    tls_control_required = True
    tls_data_required = True
auth = DummyAuthorizer()
auth.add_user("phone", "s3cret", root, perm="elr")
Handler.authorizer = auth
"#;
    let (pem, key) = (d.join("srv.pem"), d.join("srv.key"));
    let (_ftpd, port) =
        bindwave_tests::ftp_server(d, "ftpsd", server, &[root.as_os_str(), pem.as_os_str(), key.as_os_str()]);

    let c = Controller::start(d);
    let access = format!(
        "[access]\nprotocol = \"ftps\"\nserver = \"127.0.0.1\"\nport = {port}\nuser = \"phone\"\npassword = \"s3cret\"\n\n"
    );
    let trusting = format!("{access}[download]\nca_file = {:?}\nattempts = 2\nbackoff_ms = 50\n", d.join("ca.pem"));
    let _agent = phone().start_with(d, &c.mqtt, TABLE, &trusting);
    let stranger = Phone { id: "phone-2", ..phone() };
    let _stranger = stranger.start_with(d, &c.mqtt, TABLE, &format!("{access}{FAST_RETRIES}"));
    wait_until(Duration::from_secs(20), "both phones online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
            == 2
    });

    // The phone without the fleet's CA: one attempt, and the reason names the setting to fix.
    let (_, bytes, sha) = bind(4096, &[3]);
    std::fs::write(root.join("fw-direct.bind"), &bytes).unwrap();
    let cmd = bindwave_tests::update_json("job-untrusted", "fw-direct.bind", bytes.len(), &sha, true);
    bindwave_tests::send_command(&c.mqtt, "phone-2", "job-untrusted", &bindwave_tests::sign_command("phone-2", &cmd));
    let r = outcome(&d.join("phone-2"), "job-untrusted", 30);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["reason"]["code"], "download_failed", "{r}");
    assert_eq!(r["reason"]["attempts"], 1, "a certificate problem is not retried: {r}");
    let detail = r["reason"]["detail"].as_str().unwrap();
    assert!(detail.contains("ca_file") && detail.contains("ftps://127.0.0.1"), "{detail}");

    // The phone with it: the use-defaults rollout installs over TLS.
    roll_out_by_file_name_to(&c, d, &root, "--devices=phone-1");
    assert_eq!(std::fs::read(d.join("phone-1/slots/b/payload")).unwrap(), std::fs::read(d.join("fw.img")).unwrap());
}

/// Packs a bind, puts it on the fleet's own server (`root`) under its content address, rolls it out with
/// `--use-defaults`, and checks the phone installed it.
fn roll_out_by_file_name(c: &Controller, d: &Path, root: &Path) {
    roll_out_by_file_name_to(c, d, root, "--all");
}

/// The same, to the devices `target` names (`--all`, `--devices=...`).
fn roll_out_by_file_name_to(c: &Controller, d: &Path, root: &Path, target: &str) {
    let sha = c.pack_and_add(d, "fw", "V3 R3.18.0", Some("3"));
    std::fs::copy(d.join("fw.bind"), root.join(format!("{sha}.bind"))).unwrap();
    let r = c.ok(&["rollout", "create", "--image", &sha, target, "--use-defaults", "--start"]);
    let mut s = Value::Null;
    wait_until(Duration::from_secs(30), "the rollout to finish", || {
        s = c.json(&["rollout", "status", &r, "-o", "json"]);
        s["rollout"]["state"] == "finished" || s["counts"]["failed"] != 0
    });
    assert_eq!(s["counts"]["succeeded"], 1, "{:#}", s["jobs"]);
}

/// A server whose whole answer is a file shorter than the bind the command names holds another file, not a
/// bind cut short: the job fails at once, saying so with both sizes and the URL, over HTTP and over FTP.
#[test]
fn a_complete_answer_shorter_than_the_bind_fails_at_once_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start(d);
    let _agent = phone().start_with(d, &c.mqtt, TABLE, FAST_RETRIES);
    online(&c);
    let (_, bytes, sha) = bind(8000, &[3]);
    let short = bytes[..20].to_vec();
    let not_the_bind = |r: &Value, url: &str| {
        assert_eq!(r["state"], "failed", "{r}");
        assert_eq!(r["reason"]["code"], "download_failed", "{r}");
        assert_eq!(r["reason"]["attempts"], 1, "a complete answer is not retried: {r}");
        let detail = r["reason"]["detail"].as_str().unwrap();
        let said = format!("the server's file {url} is 20 bytes, not the {}-byte bind the command names", bytes.len());
        assert_eq!(detail, said);
    };

    let server = BindServer::start(short.clone(), ServeOptions::default());
    command(&c.mqtt, "job-short-http", &server.url, bytes.len(), &sha);
    not_the_bind(&outcome(&d.join("phone-1"), "job-short-http", 30), &server.url);
    assert_eq!(server.stats().requests.len(), 1, "asked once");

    let root = d.join("ftp");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("short.bind"), &short).unwrap();
    let setup = r#"
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler as Handler
auth = DummyAuthorizer()
auth.add_anonymous(sys.argv[2])
Handler.authorizer = auth
"#;
    let (_ftpd, port) = bindwave_tests::ftp_server(d, "ftpd", setup, &[root.as_os_str()]);
    let url = format!("ftp://127.0.0.1:{port}/short.bind");
    command(&c.mqtt, "job-short-ftp", &url, bytes.len(), &sha);
    not_the_bind(&outcome(&d.join("phone-1"), "job-short-ftp", 30), &url);

    // A server that will not say the size (no SIZE): the transfer it confirms complete says it instead.
    let server = r#"
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
root = sys.argv[2]
class Handler(FTPHandler):
    def ftp_SIZE(self, path):
        self.respond("502 SIZE not implemented.")
auth = DummyAuthorizer()
auth.add_anonymous(root)
Handler.authorizer = auth
"#;
    let (_sizeless, port) = bindwave_tests::ftp_server(d, "ftpd-no-size", server, &[root.as_os_str()]);
    let url = format!("ftp://127.0.0.1:{port}/short.bind");
    command(&c.mqtt, "job-short-ftp-no-size", &url, bytes.len(), &sha);
    not_the_bind(&outcome(&d.join("phone-1"), "job-short-ftp-no-size", 30), &url);
    assert_eq!(std::fs::read_dir(d.join("phone-1/downloads")).unwrap().count(), 0, "nothing is left behind");
}

/// A download the phone cannot write is its own storage's failure, told apart from a failed install.
#[test]
fn a_download_the_phone_cannot_store_fails_with_storage_failed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start(d);
    let _agent = phone().start_with(d, &c.mqtt, TABLE, FAST_RETRIES);
    online(&c);
    let (_, bytes, sha) = bind(8000, &[3]);
    let server = BindServer::start(bytes.clone(), ServeOptions::default());
    // Where the download would go, a directory stands: the file cannot be opened.
    let blocked = d.join("phone-1/downloads/job-disk.bind");
    std::fs::create_dir_all(&blocked).unwrap();
    command(&c.mqtt, "job-disk", &server.url, bytes.len(), &sha);
    let r = outcome(&d.join("phone-1"), "job-disk", 30);
    assert_eq!(r["state"], "failed", "{r}");
    assert_eq!(r["reason"]["code"], "storage_failed", "{r}");
    let detail = r["reason"]["detail"].as_str().unwrap();
    assert!(detail.starts_with(&format!("open {}", blocked.display())), "{detail}");
    assert!(!d.join("phone-1/active").exists(), "nothing was installed");
}
