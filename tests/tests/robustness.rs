//! Garbage on the wire and dead servers: clear reasons, no crash, nothing lost.

use std::time::Duration;

use bindwave_tests::{free_port, http_get, wait_until, Controller, Phone};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const TABLE: &[(&str, u16)] = &[("P3", 3)];

fn mqtt_client(url: &str, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let addr = url.trim_start_matches("mqtt://");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut o = MqttOptions::new(id, host, port.parse().unwrap());
    o.set_keep_alive(Duration::from_secs(5));
    AsyncClient::new(o, 100)
}

fn metric(c: &Controller, name_and_labels: &str) -> f64 {
    let (_, body) = http_get(&c.http, "/metrics").unwrap();
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_messages_are_dropped_and_bad_downloads_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let c = tokio::task::spawn_blocking(move || {
        let c = Controller::start(&d);
        (c, d)
    })
    .await
    .unwrap();
    let (c, d) = c;
    let phone = Phone {
        id: "phone-1",
        part_number: "P3",
        software_version: "V3 R3.0.0",
        minimum_software_version: "V3 R1.0.0",
    };
    let mut agent = phone.start_with(&d, &c.mqtt, TABLE, "[download]\nattempts = 3\nbackoff_ms = 50\n");
    let c = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(20), "the phone's hello", || {
            c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().any(|d| d["online"] == true)
        });
        c
    })
    .await
    .unwrap();

    let (client, mut eventloop) = mqtt_client(&c.mqtt, "test-intruder");
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p.payload.to_vec());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client.subscribe("bindwave/v1/devices/phone-1/reports", QoS::AtLeastOnce).await.unwrap();

    // Garbage to the controller (as reports and hello) and to the agent (as commands).
    for (topic, payload) in [
        ("bindwave/v1/devices/phone-1/reports", &b"\xff\xfe not json"[..]),
        ("bindwave/v1/devices/phone-1/reports", br#"{"job_id": 7}"#),
        ("bindwave/v1/devices/phone-1/hello", br#"{"device_id":"someone-else"}"#),
        ("bindwave/v1/devices/phone-1/commands", b"reboot now"),
        ("bindwave/v1/devices/phone-1/commands", br#"{"type":"update"}"#),
    ] {
        client.publish(topic, QoS::AtLeastOnce, false, payload.to_vec()).await.unwrap();
    }
    let c = std::sync::Arc::new(c);
    let c2 = c.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(10), "malformed messages to be counted", || {
            metric(&c2, "bindwave_mqtt_messages_malformed_total{kind=\"report\"}") >= 2.0
                && metric(&c2, "bindwave_mqtt_messages_malformed_total{kind=\"hello\"}") >= 1.0
        });
    })
    .await
    .unwrap();
    assert!(agent.alive(), "the agent died on garbage:\n{}", agent.log_text());
    assert!(agent.log_text().contains("dropping a command: malformed command message"), "{}", agent.log_text());

    // A command whose server is dead: a final `failed` with the reason, and the agent runs on.
    let dead = free_port();
    let command = format!(
        r#"{{"type":"update","job_id":"job-dead","rollout_id":"r0","url":"http://127.0.0.1:{dead}/x.bind","size":100,"sha256":"00","override":false}}"#
    );
    client
        .publish(
            "bindwave/v1/devices/phone-1/commands",
            QoS::AtLeastOnce,
            false,
            bindwave_tests::sign_command("phone-1", &command).into_bytes(),
        )
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let bytes = reports.recv().await.unwrap();
            // Our own garbage comes back on this topic too.
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if v["job_id"] == "job-dead" && v["state"] == "failed" {
                return v;
            }
        }
    })
    .await
    .expect("a final report for the dead download");
    assert_eq!(report["reason"]["code"], "download_failed", "{report}");
    assert_eq!(report["reason"]["attempts"], 3, "{report}");
    let detail = report["reason"]["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("127.0.0.1:{dead}")), "{detail}");
    assert_eq!(report["running_version"], "V3 R3.0.0");

    // The controller does not know that job, but acknowledges its final report so the phone stops repeating
    // it: the phone's journal empties.
    let journal = d.join("phone-1").join("journal.json");
    tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(10), "the outcome to be acknowledged", || {
            let j: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&journal).unwrap_or_default()).unwrap_or_default();
            j["unacked"].as_array().is_some_and(|u| u.is_empty()) && j["history"][0]["job_id"] == "job-dead"
        })
    })
    .await
    .unwrap();
    assert!(agent.alive());
    let c3 = c.clone();
    tokio::task::spawn_blocking(move || {
        assert!(c3.json(&["device", "list", "-o", "json"]).as_array().unwrap().len() == 1)
    })
    .await
    .unwrap();
}
