//! Raw phones: plain rumqttc clients with the real phones' client ids, topics and messages, and none of the
//! agent's work (no journal, no download, no install). One MQTT connection and one tokio task per phone, as
//! the simulator runs its agents.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bindwave_controller::fleet::device_id;
use bindwave_proto::wire::{TopicKind, MAX_PACKET_SIZE};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::messages;

/// Phones started at once while the fleet connects (the listen backlogs are 4,096 and smaller).
const CONNECT_BATCH: usize = 500;
/// The pause after a failed connection, before the jitter: short, so a fleet comes back at once.
const RETRY: Duration = Duration::from_millis(50);

/// How many times something happened, and when first and last (nanoseconds after the fleet's base instant).
#[derive(Debug)]
pub struct Counter {
    count: AtomicUsize,
    first: AtomicU64,
    last: AtomicU64,
}

impl Default for Counter {
    fn default() -> Self {
        Counter { count: AtomicUsize::new(0), first: AtomicU64::new(u64::MAX), last: AtomicU64::new(0) }
    }
}

impl Counter {
    pub fn hit(&self, base: Instant) {
        let at = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.first.fetch_min(at, Ordering::Relaxed);
        self.last.fetch_max(at, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.first.store(u64::MAX, Ordering::Relaxed);
        self.last.store(0, Ordering::Relaxed);
    }

    /// When it first happened since the last reset.
    pub fn first(&self, base: Instant) -> Option<Instant> {
        let ns = self.first.load(Ordering::Relaxed);
        (ns != u64::MAX).then(|| base + Duration::from_nanos(ns))
    }

    /// When it last happened since the last reset.
    pub fn last(&self, base: Instant) -> Option<Instant> {
        (self.count() > 0).then(|| base + Duration::from_nanos(self.last.load(Ordering::Relaxed)))
    }
}

/// What the phones saw, shared by all of them.
#[derive(Debug)]
pub struct Seen {
    pub base: Instant,
    /// Connections made (CONNACKs).
    pub connects: Counter,
    /// Subscriptions to their command topic confirmed (SUBACKs).
    pub subscribed: Counter,
    /// Update commands: the first of each connection.
    pub commands: Counter,
    /// Acks of final reports: the first of each phone.
    pub acks: Counter,
    /// Which phones have had their final report acked.
    acked: Vec<AtomicBool>,
}

impl Seen {
    /// Phone `index` had its final report acked: counted the first time.
    fn ack(&self, index: usize) {
        if !self.acked[index].swap(true, Ordering::Relaxed) {
            self.acks.hit(self.base);
        }
    }
}

/// What a raw phone does with an update command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Answers as an agent's successful update of a small bind does: four progress reports, the final
    /// `succeeded`, and its hello with the new version ([`messages::successful_job`]).
    Floor,
    /// Keeps the final `succeeded` report ready, and sends it only when [`RawFleet::release`] says so.
    Instant,
    /// Only counts it.
    Listen,
}

/// A final report waiting for [`RawFleet::release`]: the phone, its client to send it through, the topic and
/// the report.
type Held = (usize, AsyncClient, String, Vec<u8>);

pub struct RawFleet {
    pub seen: Arc<Seen>,
    held: Arc<Mutex<Vec<Held>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RawFleet {
    /// Connects phones `0..phones` to `broker` (`mqtt://host:port`), each saying hello and subscribing to its
    /// commands, and returns once every one is subscribed. `bind_size` is what their final reports say they
    /// downloaded.
    pub fn start(rt: &Handle, broker: &str, phones: usize, role: Role, bind_size: u64) -> Result<RawFleet> {
        let (host, port) = host_port(broker)?;
        let seen = Arc::new(Seen {
            base: Instant::now(),
            connects: Counter::default(),
            subscribed: Counter::default(),
            commands: Counter::default(),
            acks: Counter::default(),
            acked: (0..phones).map(|_| AtomicBool::new(false)).collect(),
        });
        let held = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::with_capacity(phones);
        let limit = Duration::from_secs(60);
        for batch in (0..phones).collect::<Vec<_>>().chunks(CONNECT_BATCH) {
            for &i in batch {
                let phone = Phone::new(i, role, bind_size)?;
                let (client, events) = AsyncClient::new(phone.options(&host, port), 64);
                tasks.push(rt.spawn(phone.run(client, events, seen.clone(), held.clone())));
            }
            let want = batch.last().map_or(0, |l| l + 1);
            let start = Instant::now();
            while seen.subscribed.count() < want {
                if start.elapsed() > limit {
                    bail!("only {} of {want} raw phones subscribed within {limit:?}", seen.subscribed.count());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(RawFleet { seen, held, tasks })
    }

    /// Instant phones: every final report held so far goes out now. Returns how many.
    pub fn release(&self) -> usize {
        self.send_held(|_| true)
    }

    /// Instant phones: waits until every one of `n` final reports is acked, sending those not yet acked
    /// again every `every`, as an agent repeats its unacknowledged final reports (`report_retry_secs`; the
    /// simulator's phones use 5 s). Returns how many reports were sent again.
    pub fn wait_acked(&self, n: usize, every: Duration, limit: Duration) -> Result<usize> {
        let start = Instant::now();
        let mut again = 0;
        loop {
            let left = limit.saturating_sub(start.elapsed());
            match self.wait("final reports acked", n, every.min(left), |s| &s.acks) {
                Ok(()) => return Ok(again),
                Err(e) if start.elapsed() >= limit => return Err(e),
                Err(_) => again += self.send_held(|i| !self.seen.acked[i].load(Ordering::Relaxed)),
            }
        }
    }

    fn send_held(&self, which: impl Fn(usize) -> bool) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut sent = 0;
        for (_, client, topic, payload) in held.iter().filter(|h| which(h.0)) {
            let _ = client.try_publish(topic, QoS::AtLeastOnce, false, payload.clone());
            sent += 1;
        }
        sent
    }

    /// Waits until `counter(seen)` reaches `n`, or fails after `limit` saying how far it got.
    pub fn wait(&self, what: &str, n: usize, limit: Duration, counter: impl Fn(&Seen) -> &Counter) -> Result<()> {
        let start = Instant::now();
        while counter(&self.seen).count() < n {
            if start.elapsed() > limit {
                bail!("{what}: {} of {n} within {limit:?}", counter(&self.seen).count());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}

impl Drop for RawFleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `mqtt://host:port` as its host and port.
pub fn host_port(url: &str) -> Result<(String, u16)> {
    let addr = url.strip_prefix("mqtt://").with_context(|| format!("{url} is not an mqtt:// URL"))?;
    let (host, port) = addr.rsplit_once(':').with_context(|| format!("{url} has no port"))?;
    Ok((host.to_string(), port.trim_end_matches('/').parse().with_context(|| format!("the port of {url}"))?))
}

/// One raw phone's identity and messages.
struct Phone {
    index: usize,
    role: Role,
    bind_size: u64,
    commands: String,
    reports: String,
    hello_topic: String,
    presence_topic: String,
    hello: Vec<u8>,
    online: Vec<u8>,
    offline: Vec<u8>,
}

impl Phone {
    fn new(index: usize, role: Role, bind_size: u64) -> Result<Phone> {
        Ok(Phone {
            index,
            role,
            bind_size,
            commands: messages::topic(TopicKind::Commands, index)?,
            reports: messages::topic(TopicKind::Reports, index)?,
            hello_topic: messages::topic(TopicKind::Hello, index)?,
            presence_topic: messages::topic(TopicKind::Presence, index)?,
            hello: messages::factory_hello(index)?,
            online: messages::presence(true)?,
            offline: messages::presence(false)?,
        })
    }

    /// The agent's MQTT options (`bindwave_link::LinkOptions::new` and the agent's last will).
    fn options(&self, host: &str, port: u16) -> MqttOptions {
        let mut o = MqttOptions::new(device_id(self.index), host, port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET_SIZE + 1024, MAX_PACKET_SIZE)
            .set_inflight(100)
            .set_last_will(LastWill::new(&self.presence_topic, self.offline.clone(), QoS::AtLeastOnce, true));
        o
    }

    async fn run(self, client: AsyncClient, mut events: EventLoop, seen: Arc<Seen>, held: Arc<Mutex<Vec<Held>>>) {
        let mut commanded = false;
        let mut jitter = (self.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    seen.connects.hit(seen.base);
                    commanded = false;
                    let _ = client.try_subscribe(&self.commands, QoS::AtLeastOnce);
                    let _ = client.try_publish(&self.hello_topic, QoS::AtLeastOnce, true, self.hello.clone());
                    let _ = client.try_publish(&self.presence_topic, QoS::AtLeastOnce, true, self.online.clone());
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => seen.subscribed.hit(seen.base),
                Ok(Event::Incoming(Packet::Publish(p))) => match messages::command_job(&p.payload) {
                    Some((true, job)) if !commanded => {
                        commanded = true;
                        seen.commands.hit(seen.base);
                        self.answer(&client, &job, &held);
                    }
                    Some((false, _)) => seen.ack(self.index),
                    _ => {}
                },
                Ok(_) => {}
                Err(_) => {
                    jitter ^= jitter << 13;
                    jitter ^= jitter >> 7;
                    jitter ^= jitter << 17;
                    tokio::time::sleep(RETRY + Duration::from_millis(jitter % 50)).await;
                }
            }
        }
    }

    fn answer(&self, client: &AsyncClient, job: &str, held: &Mutex<Vec<Held>>) {
        match self.role {
            Role::Floor => {
                let Ok(messages) = messages::successful_job(self.index, job, self.bind_size) else { return };
                for (kind, payload, retain) in messages {
                    let topic = if kind == TopicKind::Hello { &self.hello_topic } else { &self.reports };
                    let _ = client.try_publish(topic, QoS::AtLeastOnce, retain, payload);
                }
            }
            Role::Instant => {
                let Ok(report) = messages::succeeded(job, self.bind_size) else { return };
                held.lock().unwrap_or_else(|e| e.into_inner()).push((
                    self.index,
                    client.clone(),
                    self.reports.clone(),
                    report,
                ));
            }
            Role::Listen => {}
        }
    }
}
