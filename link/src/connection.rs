//! An MQTT connection that keeps itself up.
//!
//! rumqttc reconnects only while its event loop is polled, and retries at once with no pause. So the event
//! loop runs in a task of its own, sleeps with [`Backoff::RECONNECT`] after every error, and hands what it
//! hears to its owner through a bounded channel.
//!
//! Backpressure: when the owner falls behind and the channel is full, the task waits for room before it
//! polls again. It then reads nothing more from the socket, so the broker holds (or, past its own queue
//! limit, drops) what it has for this client; the owner's memory stays bounded. While the task waits it
//! also sends nothing, so an owner must never wait on [`rumqttc::AsyncClient::publish`] while it is not
//! reading its events: publish with `try_publish` and keep what did not fit (the controller's core keeps an
//! outbox), or the two wait on each other.
//!
//! Failover: with [`LinkOptions::fallback_urls`], a failed or dropped connection is retried on the next broker
//! of the list ([`Failover`]), for brokers of one cluster (every node routes to every other). The session
//! (subscriptions, queued messages) stays on the broker that died, so the owner subscribes again on every
//! [`LinkEvent::Connected`], as it already must; QoS 1 messages the link had not seen acknowledged are sent
//! again to the new broker.
//!
//! Acknowledgement: with [`LinkOptions::manual_acks`], the link does not acknowledge a QoS 1 message when it
//! reads it: the owner does, with [`Delivery::ack`], once it has acted on it (the agent, once the command is in
//! its journal). A process killed in between never acknowledged it, so the broker delivers it again when the
//! session resumes: a power cut cannot lose a command the phone had not yet written down.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Backoff, BrokerUrl, Failover, LinkError, TlsFiles};

/// What a client reads beyond [`bindwave_proto::wire::MAX_PACKET_SIZE`], the broker's limit: room for the
/// topic and the header, so that nothing a broker delivers is too large for the link.
pub const READ_SLACK: usize = 1024;

/// What the connection tells its owner.
#[derive(Debug)]
pub enum LinkEvent {
    /// (Re)connected: subscribe and announce again.
    Connected,
    /// The connection failed or dropped; it is being retried.
    Disconnected(String),
    Message {
        topic: String,
        payload: Vec<u8>,
        /// With [`LinkOptions::manual_acks`], what acknowledges the message; `None` when the link already has.
        delivery: Option<Delivery>,
    },
}

/// A QoS 1 message the broker waits to hear acknowledged: until [`Delivery::ack`], a resumed session gets it
/// again. Boxed: the link's channel keeps a block of 32 events from its start, and a simulated fleet keeps a
/// link a phone.
#[derive(Debug)]
pub struct Delivery(Box<rumqttc::Publish>);

impl Delivery {
    /// Acknowledges the message to the broker. It never waits: when the link's request queue is full, the
    /// acknowledgement waits for room in a task of its own (an owner that waited while not reading its events
    /// would wait on the link forever, see the module's note).
    pub fn ack(self, client: &AsyncClient) {
        if client.try_ack(&self.0).is_err() {
            let client = client.clone();
            tokio::spawn(async move {
                // An error here means the link is gone, and the broker sends the message again to the next one.
                let _ = client.ack(&self.0).await;
            });
        }
    }
}

#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub broker_url: String,
    /// Brokers tried in turn after `broker_url` when a connection fails or drops (nodes of one cluster); the
    /// link stays on whichever works. The same login and TLS files serve every one.
    pub fallback_urls: Vec<String>,
    pub client_id: String,
    /// Sent with the password, or alone (MQTT allows a username without a password).
    pub username: Option<String>,
    /// Only with a username.
    pub password: Option<String>,
    /// For `mqtts://`: the CA the broker is verified against, and a client certificate for mutual TLS.
    pub tls: TlsFiles,
    pub last_will: Option<LastWill>,
    pub clean_session: bool,
    /// The owner acknowledges each QoS 1 message itself, with the message's [`Delivery`]; otherwise the link
    /// does as it reads it.
    pub manual_acks: bool,
    pub keep_alive: Duration,
    /// Requests (publishes, subscribes) that may wait for the event loop.
    pub request_capacity: usize,
    /// Events that may wait for the owner before the link stops reading from the broker.
    pub event_capacity: usize,
    /// Largest MQTT packet sent; the largest read is this plus [`READ_SLACK`]. Default
    /// [`bindwave_proto::wire::MAX_PACKET_SIZE`], the broker's limit.
    pub max_packet_size: usize,
    /// QoS 1 messages in flight at once from this client.
    pub inflight: u16,
    /// Incoming packets rumqttc may buffer between two polls, allocated up front (144 bytes each); it grows past
    /// this when a burst needs more.
    pub incoming_buffer: usize,
}

/// The sizes of a link's queues and buffers, for a process that runs many links (a simulated fleet), where
/// the defaults' up-front allocations add up. They change how much waits in memory, never what is read: the
/// largest packet is [`LinkOptions::max_packet_size`] whatever these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSizes {
    pub request_capacity: usize,
    pub event_capacity: usize,
    pub inflight: u16,
    pub incoming_buffer: usize,
}

impl LinkSizes {
    /// For one of thousands of simulated phones: a phone sends a handful of messages at a time and hears one
    /// command at a time.
    pub const SMALL: LinkSizes =
        LinkSizes { request_capacity: 64, event_capacity: 16, inflight: 8, incoming_buffer: 0 };
}

impl LinkOptions {
    pub fn new(broker_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        LinkOptions {
            broker_url: broker_url.into(),
            fallback_urls: Vec::new(),
            client_id: client_id.into(),
            username: None,
            password: None,
            tls: TlsFiles::default(),
            last_will: None,
            clean_session: false,
            manual_acks: false,
            keep_alive: Duration::from_secs(30),
            request_capacity: 1024,
            event_capacity: 256,
            max_packet_size: bindwave_proto::wire::MAX_PACKET_SIZE,
            inflight: 100,
            incoming_buffer: RUMQTTC_INCOMING_BUFFER,
        }
    }

    /// These options with other queue and buffer sizes.
    pub fn with_sizes(mut self, sizes: LinkSizes) -> Self {
        self.request_capacity = sizes.request_capacity;
        self.event_capacity = sizes.event_capacity;
        self.inflight = sizes.inflight;
        self.incoming_buffer = sizes.incoming_buffer;
        self
    }
}

/// What rumqttc's state allocates for incoming packets by default.
const RUMQTTC_INCOMING_BUFFER: usize = 100;

/// A live connection: publish through `client`, read what happens from `events`.
pub struct Link {
    pub client: AsyncClient,
    pub events: mpsc::Receiver<LinkEvent>,
    pub task: JoinHandle<()>,
}

/// Starts connecting. Errors here are only about the options; an unreachable broker is retried forever and
/// reported as [`LinkEvent::Disconnected`].
pub fn connect(opts: LinkOptions) -> Result<Link, LinkError> {
    let mut brokers = Vec::with_capacity(1 + opts.fallback_urls.len());
    for url in std::iter::once(&opts.broker_url).chain(&opts.fallback_urls) {
        let broker = BrokerUrl::parse(url)?;
        let transport = match (broker.tls, opts.tls.is_empty()) {
            (true, _) if opts.tls.ca_file.is_none() => return Err(LinkError::TlsWithoutCa { url: url.clone() }),
            (true, _) => Some(opts.tls.transport()?),
            (false, true) => None,
            (false, false) => return Err(LinkError::TlsFilesWithPlainUrl { url: url.clone() }),
        };
        brokers.push(mqtt_options(&opts, broker, transport));
    }
    if opts.password.is_some() && opts.username.is_none() {
        return Err(LinkError::PasswordWithoutUsername);
    }
    let mut failover = Failover::new(brokers.len());
    let mqtt = brokers[0].clone();
    let (client, mut eventloop) = AsyncClient::new(mqtt, opts.request_capacity);
    if opts.incoming_buffer != RUMQTTC_INCOMING_BUFFER {
        eventloop.state.events = std::collections::VecDeque::with_capacity(opts.incoming_buffer);
    }
    let (tx, events) = mpsc::channel(opts.event_capacity.max(1));
    let manual_acks = opts.manual_acks;
    let task = tokio::spawn(async move {
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failover.connected();
                    LinkEvent::Connected
                }
                Ok(Event::Incoming(Packet::Publish(mut p))) => {
                    // The delivery keeps only what acknowledges it: the packet id and QoS.
                    let (topic, payload) = (std::mem::take(&mut p.topic), std::mem::take(&mut p.payload).to_vec());
                    LinkEvent::Message { topic, payload, delivery: manual_acks.then(|| Delivery(Box::new(p))) }
                }
                Ok(_) => continue,
                Err(e) => {
                    if tx.send(LinkEvent::Disconnected(e.to_string())).await.is_err() {
                        return;
                    }
                    let retry = failover.failed();
                    if brokers.len() > 1 {
                        // rumqttc connects with these options on its next poll.
                        eventloop.mqtt_options = brokers[failover.current()].clone();
                    }
                    tokio::time::sleep(Backoff::RECONNECT.pause(retry)).await;
                    continue;
                }
            };
            if tx.send(event).await.is_err() {
                return; // the owner is gone
            }
        }
    });
    Ok(Link { client, events, task })
}

/// The rumqttc options for one broker: the same client, login and limits for each.
fn mqtt_options(opts: &LinkOptions, broker: BrokerUrl, transport: Option<rumqttc::Transport>) -> MqttOptions {
    let mut mqtt = MqttOptions::new(opts.client_id.clone(), broker.host, broker.port);
    if let Some(transport) = transport {
        mqtt.set_transport(transport);
    }
    mqtt.set_keep_alive(opts.keep_alive)
        .set_clean_session(opts.clean_session)
        .set_manual_acks(opts.manual_acks)
        .set_max_packet_size(opts.max_packet_size.saturating_add(READ_SLACK), opts.max_packet_size)
        .set_request_channel_capacity(opts.request_capacity)
        .set_inflight(opts.inflight);
    if let Some(will) = &opts.last_will {
        mqtt.set_last_will(will.clone());
    }
    if let Some(u) = &opts.username {
        // rumqttc leaves an empty password out of CONNECT: the username goes alone.
        mqtt.set_credentials(u.clone(), opts.password.clone().unwrap_or_default());
    }
    mqtt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_needs_a_username_and_a_bad_url_is_refused_before_connecting() {
        let mut opts = LinkOptions::new("mqtt://127.0.0.1:1", "c");
        opts.password = Some("p".into());
        assert!(matches!(connect(opts.clone()), Err(LinkError::PasswordWithoutUsername)));
        opts.broker_url = "http://127.0.0.1:1".into();
        assert!(matches!(connect(opts), Err(LinkError::BrokerUrl { .. })));
    }

    #[tokio::test]
    async fn tls_needs_mqtts_and_a_ca_and_plain_mqtt_takes_no_tls_files() {
        let mut opts = LinkOptions::new("mqtts://127.0.0.1:1", "c");
        assert!(matches!(connect(opts.clone()), Err(LinkError::TlsWithoutCa { .. })));
        opts.broker_url = "mqtt://127.0.0.1:1".into();
        opts.tls.ca_file = Some("/etc/bindwave/ca.pem".into());
        let e = connect(opts).err().expect("refused").to_string();
        assert!(e.contains("plain mqtt://") && e.contains("mqtts://"), "{e}");
    }

    #[tokio::test]
    async fn every_fallback_is_checked_as_the_url_is() {
        let mut opts = LinkOptions::new("mqtt://127.0.0.1:1", "c");
        opts.fallback_urls = vec!["mqtt://127.0.0.1:2".into(), "mqtt:/127.0.0.1:3".into()];
        let e = connect(opts.clone()).err().expect("refused").to_string();
        assert!(e.contains("mqtt:/127.0.0.1:3"), "{e}");
        opts.fallback_urls = vec!["mqtts://127.0.0.1:2".into()];
        assert!(matches!(connect(opts), Err(LinkError::TlsWithoutCa { url }) if url == "mqtts://127.0.0.1:2"));
    }

    #[test]
    fn the_link_reads_what_the_broker_lets_through() {
        let opts = LinkOptions::new("mqtt://x", "c");
        assert_eq!(opts.max_packet_size, bindwave_proto::wire::MAX_PACKET_SIZE);
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_reported_and_retried() {
        let mut opts = LinkOptions::new("mqtt://127.0.0.1:1", "c");
        opts.username = Some("phone".into());
        let mut link = connect(opts).unwrap();
        for _ in 0..2 {
            let event = tokio::time::timeout(Duration::from_secs(10), link.events.recv()).await.unwrap();
            assert!(matches!(event, Some(LinkEvent::Disconnected(_))), "{event:?}");
        }
        link.task.abort();
    }
}
