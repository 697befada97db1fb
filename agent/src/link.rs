//! An MQTT connection that keeps itself up.
//!
//! rumqttc reconnects only while its event loop is polled, and retries at once with no pause. So the event
//! loop runs in a task of its own that only forwards what it hears into an unbounded channel (it never
//! blocks, so publishing from another task cannot deadlock against it), and sleeps with jittered
//! exponential backoff after every error. The agent and the controller both talk to the broker through this.

use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::AgentError;

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
    },
}

#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub broker_url: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub last_will: Option<LastWill>,
    pub clean_session: bool,
    pub keep_alive: Duration,
    /// Requests (publishes, subscribes) that may wait for the event loop.
    pub request_capacity: usize,
    /// Largest MQTT packet, either way.
    pub max_packet_size: usize,
    /// QoS 1 messages in flight at once from this client.
    pub inflight: u16,
}

impl LinkOptions {
    pub fn new(broker_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        LinkOptions {
            broker_url: broker_url.into(),
            client_id: client_id.into(),
            username: None,
            password: None,
            last_will: None,
            clean_session: false,
            keep_alive: Duration::from_secs(30),
            request_capacity: 1024,
            max_packet_size: 256 * 1024,
            inflight: 100,
        }
    }
}

/// Splits `mqtt://host:port` (port defaults to 1883; `tcp://` is accepted as a synonym).
pub fn parse_broker_url(url: &str) -> Result<(String, u16), AgentError> {
    let err = |reason: &str| AgentError::BrokerUrl { url: url.to_string(), reason: reason.to_string() };
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| err("only mqtt:// is supported"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| err("the port is not a number from 1 to 65535"))?),
        None => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(err("missing or invalid host"));
    }
    if port == 0 {
        return Err(err("port 0 is not a broker port"));
    }
    Ok((host.to_string(), port))
}

/// A live connection: publish through `client`, read what happens from `events`.
pub struct Link {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    pub task: JoinHandle<()>,
}

/// Starts connecting. Errors here are only about the options; an unreachable broker is retried forever and
/// reported as [`LinkEvent::Disconnected`].
pub fn connect(opts: LinkOptions) -> Result<Link, AgentError> {
    let (host, port) = parse_broker_url(&opts.broker_url)?;
    let mut mqtt = MqttOptions::new(opts.client_id, host, port);
    mqtt.set_keep_alive(opts.keep_alive)
        .set_clean_session(opts.clean_session)
        .set_max_packet_size(opts.max_packet_size, opts.max_packet_size)
        .set_request_channel_capacity(opts.request_capacity)
        .set_inflight(opts.inflight);
    if let Some(will) = opts.last_will {
        mqtt.set_last_will(will);
    }
    if let (Some(u), Some(p)) = (opts.username, opts.password) {
        mqtt.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, opts.request_capacity);
    let (tx, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    LinkEvent::Connected
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    LinkEvent::Message { topic: p.topic, payload: p.payload.to_vec() }
                }
                Ok(_) => continue,
                Err(e) => {
                    if tx.send(LinkEvent::Disconnected(e.to_string())).is_err() {
                        return;
                    }
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            if tx.send(event).is_err() {
                return; // the owner is gone
            }
        }
    });
    Ok(Link { client, events, task })
}

/// Full-jitter exponential backoff: a random pause up to 200 ms x 2^n, capped at 15 s, at least 50 ms.
pub fn backoff(failures: u32) -> Duration {
    let cap_ms = (200u64 << failures.min(7)).min(15_000);
    Duration::from_millis(rand::thread_rng().gen_range(50..=cap_ms.max(51)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(parse_broker_url("mqtt://127.0.0.1:1884").unwrap(), ("127.0.0.1".into(), 1884));
        assert_eq!(parse_broker_url("mqtt://broker.example").unwrap(), ("broker.example".into(), 1883));
        assert_eq!(parse_broker_url("tcp://[::1]:1883").unwrap(), ("::1".into(), 1883));
        for bad in ["http://x:1", "mqtt://", "mqtt://x:port", "mqtt://x:0", "127.0.0.1:1883"] {
            let e = parse_broker_url(bad).unwrap_err().to_string();
            assert!(e.contains("expected mqtt://host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for n in 0..40 {
            let d = backoff(n);
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_secs(15));
        }
    }
}
