//! Webhooks end to end: a real HTTP receiver hears every rollout event, in order, each signed with the
//! controller's webhook secret; a receiver that fails is tried again until it answers; and what was queued
//! while it was down survives a restart of the controller. `bindwave webhook deliveries` tells the story.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bindwave_tests::{wait_until, Controller, Phone, Proc};
use serde_json::Value;

const TABLE: &[(&str, u16)] = &[("S30817-S7702-A101", 3)];

/// What the receiver heard: (event header, signature header, body).
type Heard = Arc<Mutex<Vec<(String, String, String)>>>;

/// An HTTP receiver that answers 503 while `down` is set, else 200, and keeps what it was sent when it answered 200.
struct Receiver {
    url: String,
    heard: Heard,
    down: Arc<Mutex<bool>>,
    refused: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let url = format!("http://{}/hooks/bindwave", listener.local_addr().expect("its address"));
        let heard: Heard = Default::default();
        let down: Arc<Mutex<bool>> = Default::default();
        let refused: Arc<Mutex<usize>> = Default::default();
        let (h, d, r) = (heard.clone(), Arc::clone(&down), Arc::clone(&refused));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let (mut len, mut event, mut signature) = (0usize, String::new(), String::new());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    let lower = line.to_ascii_lowercase();
                    let value = line.split_once(':').map_or("", |(_, v)| v.trim()).to_string();
                    if lower.starts_with("content-length:") {
                        len = value.parse().unwrap_or(0);
                    } else if lower.starts_with("x-bindwave-event:") {
                        event = value;
                    } else if lower.starts_with("x-bindwave-signature:") {
                        signature = value;
                    }
                    line.clear();
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let status = if *d.lock().unwrap() {
                    *r.lock().unwrap() += 1;
                    "503 Service Unavailable"
                } else {
                    h.lock().unwrap().push((event, signature, String::from_utf8_lossy(&body).into_owned()));
                    "200 OK"
                };
                let mut conn = conn;
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Receiver { url, heard, down, refused }
    }

    fn events(&self) -> Vec<String> {
        self.heard.lock().unwrap().iter().map(|(e, _, _)| e.clone()).collect()
    }
}

fn hmac_hex(secret: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.trim().as_bytes());
    hex::encode(ring::hmac::sign(&key, body.as_bytes()).as_ref())
}

#[test]
fn a_receiver_hears_every_event_signed_in_order_retried_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let receiver = Receiver::start();
    *receiver.down.lock().unwrap() = true;
    let mut c = Controller::start_serving(d, &["--allow-unsigned-images", "--webhook-url", &receiver.url]);
    let _phone: Proc = Phone {
        id: "phone-1",
        part_number: TABLE[0].0,
        software_version: "V3 R3.11.0",
        minimum_software_version: "V3 R1.0.0",
    }
    .start(d, &c.mqtt, TABLE);
    wait_until(Duration::from_secs(60), "the phone online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().any(|d| d["online"] == true)
    });
    let image = c.pack_and_add(d, "fw", "V3 R3.18.0", None);
    let r = c.ok(&["rollout", "create", "--image", &image, "--all", "--start"]);
    wait_until(Duration::from_secs(60), "the rollout to finish", || {
        c.json(&["rollout", "status", &r, "-o", "json"])["rollout"]["state"] == "finished"
    });
    // The receiver is down: every delivery is tried, answered 503, and waits for its next attempt.
    wait_until(Duration::from_secs(30), "a first refused attempt", || *receiver.refused.lock().unwrap() > 0);
    let pending = c.json(&["webhook", "deliveries", "-o", "json"]);
    assert!(pending.as_array().unwrap().iter().all(|d| d["state"] == "pending"), "{pending:#}");
    // A restart while they wait: the queue is in the store.
    c.restart(d);
    *receiver.down.lock().unwrap() = false;
    let want = ["rollout.created", "rollout.started", "wave.started", "wave.passed", "rollout.finished"];
    wait_until(Duration::from_secs(60), "every event delivered after the restart", || {
        receiver.events().len() >= want.len()
    });
    assert_eq!(receiver.events(), want, "in the order they happened");

    // Each is signed with the secret the controller made in its data directory.
    let secret = std::fs::read_to_string(c.data_dir.join("webhook.secret")).expect("the webhook secret");
    for (event, signature, body) in receiver.heard.lock().unwrap().iter() {
        assert_eq!(*signature, format!("sha256={}", hmac_hex(&secret, body)), "{event}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["event"], event.as_str());
        assert_eq!(v["rollout"], r.as_str());
    }
    let finished: Value = serde_json::from_str(&receiver.heard.lock().unwrap()[4].2).unwrap();
    assert_eq!(finished["state"]["state"], "finished", "{finished:#}");
    assert!(finished["reason"].as_str().unwrap().contains("succeeded=1"), "{finished:#}");

    // The log, newest first: every one delivered; the first (which the receiver refused while the rest waited
    // behind it, to keep the order) after more than one attempt.
    let log = c.json(&["webhook", "deliveries", "-o", "json"]);
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 5, "{log:#?}");
    assert!(log.iter().all(|d| d["state"] == "delivered"), "{log:#?}");
    assert!(log[4]["attempts"].as_u64().unwrap() >= 2 && log[4]["event"] == "rollout.created", "{log:#?}");
    let table = c.ok(&["webhook", "deliveries"]);
    assert!(table.contains("rollout.finished") && table.contains("delivered"), "{table}");

    // An operator's abort is one event (a gate's would be `gate.tripped` first).
    let r2 = c.ok(&["rollout", "create", "--image", &image, "--all"]);
    c.ok(&["rollout", "abort", &r2, "--reason", "not today"]);
    wait_until(Duration::from_secs(30), "the abort delivered", || {
        receiver.events().contains(&"rollout.aborted".to_string())
    });
    assert!(!receiver.events().contains(&"gate.tripped".to_string()), "{:?}", receiver.events());
}
