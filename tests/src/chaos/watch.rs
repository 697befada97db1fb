//! An MQTT client beside the fleet that hears every command the controller sends (in lab mode, where any client
//! may subscribe), and counts the sends of each job: what "no job sent twice" is checked against.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Client, Event, Packet, QoS};

/// Sends of each job id, as heard on the broker.
#[derive(Clone, Default)]
pub struct Sends(Arc<Mutex<BTreeMap<String, u64>>>, Arc<std::sync::atomic::AtomicBool>);

impl Sends {
    /// Subscribes to every device's commands on `broker` (`mqtt://host:port`), again after each reconnect.
    pub fn watch(broker: &str) -> Sends {
        let sends = Sends::default();
        let mut options = crate::plain_mqtt_options(broker, &format!("chaos-watch-{}", std::process::id()));
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(options, 1000);
        let (counts, subscribed) = (sends.0.clone(), sends.1.clone());
        std::thread::spawn(move || {
            let filter = format!("{}/+/commands", bindwave_proto::wire::TOPIC_PREFIX);
            for event in conn.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed.store(true, std::sync::atomic::Ordering::SeqCst)
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                        let command = if v.get("command").is_some() { &v["command"] } else { &v };
                        if let Some(job) = command["job_id"].as_str().filter(|_| command["type"] == "update") {
                            *counts.lock().expect("sends").entry(job.to_string()).or_default() += 1;
                        }
                    }
                    Ok(_) => {}
                    // The broker (or its controller) is down: try again, as a phone does.
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        crate::wait_until(Duration::from_secs(10), "the command watch to subscribe", || {
            sends.1.load(std::sync::atomic::Ordering::SeqCst)
        });
        sends
    }

    /// Jobs heard, and sends beyond the first of each.
    pub fn totals(&self) -> (u64, u64) {
        let counts = self.0.lock().expect("sends");
        let again: u64 = counts.values().map(|n| n.saturating_sub(1)).sum();
        (counts.len() as u64, again)
    }

    /// Job ids sent more than once, with their sends.
    pub fn repeated(&self) -> Vec<(String, u64)> {
        self.0.lock().expect("sends").iter().filter(|(_, n)| **n > 1).map(|(j, n)| (j.clone(), *n)).collect()
    }
}
