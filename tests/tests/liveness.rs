//! Online state that stays true when a last will is lost: a phone says hello with a heartbeat, publishes its
//! retained presence, and leaves without its will ever firing (a clean MQTT disconnect, which is what a broker
//! restart that forgot the will amounts to). Through the embedded broker and through Mosquitto, the controller
//! takes it offline once three heartbeats have passed in silence.

use std::path::Path;
use std::time::{Duration, Instant};

use bindwave_proto::wire::{DeviceId, Hello, LevelSource, Presence, TopicKind};
use bindwave_proto::HardwareLevel;
use bindwave_tests::{wait_until, Controller, Mosquitto};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const HEARTBEAT_SECS: u32 = 1;

fn online(c: &Controller, device: &str) -> Option<bool> {
    let devices = c.json(&["device", "list", "-o", "json"]);
    devices.as_array()?.iter().find(|d| d["id"] == device).and_then(|d| d["online"].as_bool())
}

/// A phone that says hello (with its heartbeat), publishes its presence retained, and disconnects cleanly:
/// no last will is published, and its retained `online: true` stays on the broker.
fn a_phone_that_leaves_without_its_will(url: &str, device: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let addr = url.trim_start_matches("mqtt://");
        let (host, port) = addr.rsplit_once(':').unwrap();
        let (client, mut events) = AsyncClient::new(MqttOptions::new(device, host, port.parse().unwrap()), 10);
        let id = DeviceId::new(device).unwrap();
        let hello = Hello {
            device_id: id.clone(),
            part_number: "P3".into(),
            hardware_level: HardwareLevel(3),
            hardware_level_source: LevelSource::PartNumber,
            hardware_level_conflict: None,
            software_version: "V3 R1.0.0".parse().unwrap(),
            minimum_software_version: "V3 R1.0.0".parse().unwrap(),
            agent_version: "test".into(),
            model: None,
            labels: [].into(),
            heartbeat_secs: Some(HEARTBEAT_SECS),
            timezone: None,
        };
        let presence = Presence { online: true };
        client
            .publish(TopicKind::Hello.topic(&id), QoS::AtLeastOnce, true, serde_json::to_vec(&hello).unwrap())
            .await
            .unwrap();
        client
            .publish(TopicKind::Presence.topic(&id), QoS::AtLeastOnce, true, serde_json::to_vec(&presence).unwrap())
            .await
            .unwrap();
        let mut acked = 0;
        while acked < 2 {
            match tokio::time::timeout(Duration::from_secs(10), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                other => panic!("publishing the hello and presence: {other:?}"),
            }
        }
        client.disconnect().await.unwrap();
        // Drive the event loop until the DISCONNECT is out.
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), events.poll()).await {}
    });
}

fn a_silent_phone_goes_offline(c: &Controller) {
    let device = "phone-without-will";
    a_phone_that_leaves_without_its_will(&c.mqtt, device);
    wait_until(Duration::from_secs(20), "the phone online", || online(c, device) == Some(true));
    let seen = Instant::now();
    wait_until(Duration::from_secs(30), "the silent phone taken offline", || online(c, device) == Some(false));
    // Not at once: after its three heartbeats had passed, and by the heartbeat rule (its will never came).
    assert!(seen.elapsed() >= Duration::from_secs(2), "taken offline after {:?}", seen.elapsed());
    let log = c.proc.log_text();
    assert!(log.contains("no heartbeat from the device: taken as offline"), "the controller's log: {log}");
}

#[test]
fn a_phone_silent_for_three_heartbeats_goes_offline_through_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    a_silent_phone_goes_offline(&Controller::start(dir.path()));
}

#[test]
fn a_phone_silent_for_three_heartbeats_goes_offline_through_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let d: &Path = dir.path();
    let broker = Mosquitto::start(d);
    let c = Controller::start_with(d, &d.join("controller"), 0, None, Some(&broker.url));
    a_silent_phone_goes_offline(&c);
}
