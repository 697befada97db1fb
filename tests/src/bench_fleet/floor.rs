//! The floor's controller: one plain rumqttc client with the controller's subscriptions and MQTT options,
//! and no controller logic. It sends prepared (signed) commands in the rollout's wave shape and acks final
//! reports, or answers hellos with commands (the reconnect storm's floor).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bindwave_proto::wire::{parse_topic, Report, TopicKind, MAX_PACKET_SIZE};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{messages, raw};

/// A message the client heard: topic and payload.
type Heard = (String, Vec<u8>);

pub struct RawController {
    pub client: AsyncClient,
    heard: mpsc::UnboundedReceiver<Heard>,
    task: JoinHandle<()>,
}

impl Drop for RawController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawController {
    /// Connects as the controller's link does (persistent session, 1,000 in flight, 8,192 queued requests)
    /// and subscribes to `kinds` of every device, retrying until the broker is there; returns once the
    /// subscription is confirmed. Everything heard is passed on through an unbounded channel, so the event
    /// loop never waits on the reader, and the reader may wait on publishing.
    pub async fn connect(broker: &str, client_id: &str, kinds: &[TopicKind], limit: Duration) -> Result<Self> {
        let (host, port) = raw::host_port(broker)?;
        let mut o = MqttOptions::new(client_id, host, port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET_SIZE + 1024, MAX_PACKET_SIZE)
            .set_request_channel_capacity(8192)
            .set_inflight(1000);
        let (client, mut events) = AsyncClient::new(o, 8192);
        let (tx, heard) = mpsc::unbounded_channel();
        let (ready_tx, mut ready) = mpsc::channel(1);
        let filters: Vec<String> = kinds.iter().map(|k| k.filter_all()).collect();
        let sub = client.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            let _ = sub.try_subscribe(f, QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.try_send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic, p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        tokio::time::timeout(limit, ready.recv())
            .await
            .with_context(|| format!("the floor's controller did not subscribe at {broker} within {limit:?}"))?;
        Ok(RawController { client, heard, task })
    }
}

/// The phone of a device id (`phone-00001` is phone 0).
fn phone_of(device: &str) -> Option<usize> {
    device.strip_prefix("phone-")?.parse::<usize>().ok()?.checked_sub(1)
}

/// Where each wave ends, cumulatively, for `phones` and wave sizes in percent (as the engine rounds: up).
pub fn wave_ends(phones: usize, percents: &[f64]) -> Vec<usize> {
    let mut ends: Vec<usize> =
        percents.iter().map(|p| ((p.clamp(0.0, 100.0) / 100.0) * phones as f64).ceil() as usize).collect();
    ends.dedup();
    ends
}

/// The rollout's traffic with no controller logic: wave by wave, an update command to each phone of the
/// wave, then the wave's final reports (each acked as it arrives) before the next wave starts. Returns the
/// time from the first command to the last final report.
pub async fn waves(
    ctrl: &mut RawController,
    percents: &[f64],
    commands: &[Vec<u8>],
    acks: &[Vec<u8>],
    limit: Duration,
) -> Result<Duration> {
    let phones = commands.len();
    let topics = command_topics(phones)?;
    let mut finished = vec![false; phones];
    let start = Instant::now();
    let mut from = 0;
    for end in wave_ends(phones, percents) {
        for i in from..end {
            ctrl.client.publish(&topics[i], QoS::AtLeastOnce, false, commands[i].clone()).await?;
        }
        ack_finals(ctrl, &topics, acks, &mut finished, end - from, start + limit)
            .await
            .with_context(|| format!("the floor's wave of phones {from}..{end}"))?;
        from = end;
    }
    Ok(start.elapsed())
}

/// The ingest's floor controller: an update command to every phone, then an ack for every final report.
/// Returns the client, whose event loop may still be sending the last acks: drop it once they are in.
pub async fn command_and_ack_all(
    mut ctrl: RawController,
    commands: Vec<Vec<u8>>,
    acks: Vec<Vec<u8>>,
    limit: Duration,
) -> Result<RawController> {
    let phones = commands.len();
    let topics = command_topics(phones)?;
    let start = Instant::now();
    for (topic, command) in topics.iter().zip(commands) {
        ctrl.client.publish(topic, QoS::AtLeastOnce, false, command).await?;
    }
    let mut finished = vec![false; phones];
    ack_finals(&mut ctrl, &topics, &acks, &mut finished, phones, start + limit).await?;
    Ok(ctrl)
}

fn command_topics(phones: usize) -> Result<Vec<String>> {
    (0..phones).map(|i| messages::topic(TopicKind::Commands, i)).collect()
}

/// Reads what the phones send until `count` more of them (not yet `finished`) have sent a final report,
/// acking each final report as it arrives.
async fn ack_finals(
    ctrl: &mut RawController,
    topics: &[String],
    acks: &[Vec<u8>],
    finished: &mut [bool],
    count: usize,
    deadline: Instant,
) -> Result<()> {
    let mut done = 0;
    while done < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some((topic, payload))) = tokio::time::timeout(left, ctrl.heard.recv()).await else {
            bail!("{done} of {count} final reports arrived in time");
        };
        let Some((device, TopicKind::Reports)) = parse_topic(&topic) else { continue };
        let Ok(report) = Report::from_json(&payload) else { continue };
        let Some(i) = phone_of(device.as_str()).filter(|i| *i < finished.len()) else { continue };
        if report.state.is_final() {
            // A repeated final report (its ack was lost) is acked again, as the controller does.
            if !finished[i] {
                finished[i] = true;
                done += 1;
            }
            ctrl.client.publish(&topics[i], QoS::AtLeastOnce, false, acks[i].clone()).await?;
        }
    }
    Ok(())
}

/// The storm's floor responder: answers every hello with the phone's prepared command, until dropped.
pub fn answer_hellos(mut ctrl: RawController, commands: HashMap<String, Vec<u8>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((topic, _)) = ctrl.heard.recv().await {
            let Some((device, TopicKind::Hello)) = parse_topic(&topic) else { continue };
            if let Some(command) = commands.get(device.as_str()) {
                let commands_topic = TopicKind::Commands.topic(&device);
                if ctrl.client.publish(commands_topic, QoS::AtLeastOnce, false, command.clone()).await.is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_end_where_the_engine_rounds_them() {
        assert_eq!(wave_ends(10_000, &[1.0, 10.0, 100.0]), [100, 1000, 10_000]);
        assert_eq!(wave_ends(250, &[1.0, 10.0, 100.0]), [3, 25, 250]);
        // A wave that adds nobody is dropped.
        assert_eq!(wave_ends(50, &[1.0, 2.0, 100.0]), [1, 50]);
    }

    #[test]
    fn phones_are_numbered_from_their_device_ids() {
        assert_eq!(phone_of("phone-00001"), Some(0));
        assert_eq!(phone_of("phone-123456"), Some(123_455));
        assert_eq!(phone_of("phone-00000"), None);
        assert_eq!(phone_of("desk-1"), None);
    }
}
