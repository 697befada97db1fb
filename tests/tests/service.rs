//! The controller as a service: bind downloads with Range, uploads checked on arrival, state that survives
//! a restart, presence from the last will.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bindwave_tests::{http_get, wait_until, Controller, Phone};

/// Sends a raw HTTP request and returns the status line and the body.
fn http(base: &str, request: &str, body: &[u8]) -> (String, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.replace("{host}", addr).as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    (head, resp[split + 4..].to_vec())
}

fn packed(c: &Controller, dir: &std::path::Path) -> (String, Vec<u8>) {
    let sha = c.pack_and_add(dir, "fw", "V3 R3.18.0", Some("3"));
    (sha, std::fs::read(dir.join("fw.bind")).unwrap())
}

#[test]
fn binds_are_served_with_range_requests() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let (sha, bytes) = packed(&c, dir.path());
    assert_eq!(sha.len(), 64);

    let (head, body) =
        http(&c.http, &format!("GET /binds/{sha}.bind HTTP/1.1\r\nHost: {{host}}\r\nConnection: close\r\n\r\n"), b"");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, bytes);

    let (head, body) = http(
        &c.http,
        &format!(
            "GET /binds/{sha}.bind HTTP/1.1\r\nHost: {{host}}\r\nRange: bytes=1000-1999\r\nConnection: close\r\n\r\n"
        ),
        b"",
    );
    assert!(head.starts_with("HTTP/1.1 206"), "{head}");
    assert!(head.to_ascii_lowercase().contains(&format!("content-range: bytes 1000-1999/{}", bytes.len())), "{head}");
    assert_eq!(body, &bytes[1000..2000]);

    for path in ["/binds/../store/db", "/binds/abc.bind", &format!("/binds/{}.bind", "0".repeat(64))] {
        assert_eq!(http_get(&c.http, path).unwrap().0, 404, "{path}");
    }
}

#[test]
fn uploads_are_checked_on_arrival() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let (_, mut bytes) = packed(&c, dir.path());
    // Straight to the API, past the CLI's own check: a corrupted payload.
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let req = format!(
        "POST /api/v1/images HTTP/1.1\r\nHost: {{host}}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    let (head, body) = http(&c.http, &req, &bytes);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("not a valid bind: sha-256 mismatch"), "{body}");
    // Nothing half-stored.
    let images: Vec<_> =
        std::fs::read_dir(c.data_dir.join("images")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(c.json(&["image", "list", "-o", "json"]).as_array().unwrap().len(), 1);
}

#[test]
fn state_survives_a_restart_and_presence_follows_the_last_will() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Controller::start(d);
    let phone =
        Phone { id: "phone-1", part_number: "P", software_version: "V3 R3.0.0", minimum_software_version: "V3 R1.0.0" };
    let mut agent = phone.start(d, &c.mqtt, &[("P", 3)]);
    let online = |c: &Controller| c.json(&["device", "list", "-o", "json"])[0]["online"] == true;
    wait_until(Duration::from_secs(20), "hello", || online(&c));
    let (sha, _) = packed(&c, d);
    let r1 = c.ok(&["rollout", "create", "--image", &sha, "--all", "--start"]);
    wait_until(Duration::from_secs(30), "the rollout to finish", || {
        c.json(&["rollout", "status", &r1, "-o", "json"])["rollout"]["state"] == "finished"
    });

    // A power cut on the phone: the broker publishes its last will, and the controller marks it offline.
    agent.kill();
    wait_until(Duration::from_secs(20), "the phone to be seen offline", || !online(&c));

    // Restart the controller on the same data directory and ports.
    let http_port: u16 = c.http.rsplit(':').next().unwrap().parse().unwrap();
    let mqtt_port: u16 = c.mqtt.rsplit(':').next().unwrap().parse().unwrap();
    let data_dir = c.data_dir.clone();
    c.proc.kill();
    let c = Controller::start_with(d, &data_dir, http_port, Some(mqtt_port), None);
    let status = c.json(&["rollout", "status", &r1, "-o", "json"]);
    assert_eq!(status["counts"]["succeeded"], 1, "{status:#}");
    assert_eq!(c.json(&["image", "list", "-o", "json"])[0]["sha256"], sha.as_str());
    assert_eq!(c.json(&["device", "list", "-o", "json"])[0]["hello"]["software_version"], "V3 R3.18.0");
    // The phone comes back and is online again, on its new version.
    let _agent = phone.start(d, &c.mqtt, &[("P", 3)]);
    wait_until(Duration::from_secs(20), "the phone back online", || online(&c));
    let r2 = c.ok(&["rollout", "create", "--image", &sha, "--all"]);
    assert_eq!(r2, "r2", "rollout numbering continues after a restart");
}

#[test]
fn a_phone_offline_when_its_wave_starts_gets_its_command_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start(d);
    let phone =
        Phone { id: "phone-1", part_number: "P", software_version: "V3 R3.0.0", minimum_software_version: "V3 R1.0.0" };
    let mut agent = phone.start(d, &c.mqtt, &[("P", 3)]);
    let online = |c: &Controller| c.json(&["device", "list", "-o", "json"])[0]["online"] == true;
    wait_until(Duration::from_secs(20), "hello", || online(&c));
    agent.kill();
    wait_until(Duration::from_secs(20), "the phone offline", || !online(&c));
    let (sha, _) = packed(&c, d);
    let r = c.ok(&["rollout", "create", "--image", &sha, "--all", "--start"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.json(&["rollout", "status", &r, "-o", "json"])["counts"]["in_progress"], 1);
    // Back on: its hello asks for pending work, and the command comes again.
    let _agent = phone.start(d, &c.mqtt, &[("P", 3)]);
    wait_until(Duration::from_secs(30), "the returning phone to install", || {
        c.json(&["rollout", "status", &r, "-o", "json"])["counts"]["succeeded"] == 1
    });
}
