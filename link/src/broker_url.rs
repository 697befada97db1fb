//! Broker URLs: `mqtt://host:port` or `mqtts://host:port`, read once, with a message that says what to write
//! instead; and [`Failover`], the order in which a link with fallback brokers tries them.

use crate::LinkError;

/// Where the broker is, and whether the link speaks TLS to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: MQTT over TLS.
    pub tls: bool,
}

impl BrokerUrl {
    /// Reads `mqtt://host:port` (port 1883 by default; `tcp://` is a synonym) or `mqtts://host:port` (port
    /// 8883 by default; `ssl://` is a synonym). An IPv6 host is written in brackets (`mqtts://[::1]:8883`).
    pub fn parse(url: &str) -> Result<BrokerUrl, LinkError> {
        let err = |reason: &str| LinkError::BrokerUrl { url: url.to_string(), reason: reason.to_string() };
        let (rest, tls) = if let Some(rest) = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")) {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("mqtts://").or_else(|| url.strip_prefix("ssl://")) {
            (rest, true)
        } else {
            return Err(err("only mqtt:// and mqtts:// are supported"));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        // A colon after the closing bracket of an IPv6 host, or the only colon of a name or IPv4 host.
        let (host, port) = match rest.rsplit_once(':').filter(|(h, _)| !rest.starts_with('[') || h.ends_with(']')) {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| err("the port is not a number from 1 to 65535"))?),
            None => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') {
            return Err(err("missing or invalid host"));
        }
        if port == 0 {
            return Err(err("port 0 is not a broker port"));
        }
        Ok(BrokerUrl { host: host.to_string(), port, tls })
    }
}

/// Which of a link's brokers (its URL, then its fallbacks) it tries next, and how long it pauses first. It stays
/// on a broker while it works; after a failure it tries the next one (after the last, the first again). The
/// pause grows with the rounds that failed, not the tries: every broker is tried once before it grows. No IO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    brokers: usize,
    current: usize,
    failures: u32,
}

impl Failover {
    /// For `brokers` brokers (at least one), starting on the first.
    pub fn new(brokers: usize) -> Failover {
        Failover { brokers: brokers.max(1), current: 0, failures: 0 }
    }

    /// The broker tried now (0: the URL, 1.. the fallbacks).
    pub fn current(&self) -> usize {
        self.current
    }

    /// The broker answered: the next failure starts from the shortest pause again.
    pub fn connected(&mut self) {
        self.failures = 0;
    }

    /// The broker failed or dropped the link: moves on to the next one, and returns the retry number
    /// (for [`crate::Backoff::pause`]) to wait for before trying it.
    pub fn failed(&mut self) -> u32 {
        let retry = self.failures / self.brokers as u32;
        self.failures = self.failures.saturating_add(1);
        self.current = (self.current + 1) % self.brokers;
        retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_tries_each_broker_in_turn_and_pauses_longer_only_after_a_round() {
        let mut f = Failover::new(3);
        assert_eq!(f.current(), 0);
        let tries: Vec<(u32, usize)> = (0..7).map(|_| (f.failed(), f.current())).collect();
        assert_eq!(tries, [(0, 1), (0, 2), (0, 0), (1, 1), (1, 2), (1, 0), (2, 1)]);
        // Connected to broker 1: it stays there, and the next failure moves on with the shortest pause.
        f.connected();
        assert_eq!(f.current(), 1);
        assert_eq!((f.failed(), f.current()), (0, 2));

        // One broker: it is retried, with a growing pause, as before fallbacks existed.
        let mut one = Failover::new(1);
        assert_eq!([one.failed(), one.failed(), one.failed()], [0, 1, 2]);
        assert_eq!(one.current(), 0);
    }

    fn parse(url: &str) -> Result<(String, u16, bool), LinkError> {
        BrokerUrl::parse(url).map(|b| (b.host, b.port, b.tls))
    }

    #[test]
    fn broker_urls() {
        assert_eq!(parse("mqtt://127.0.0.1:1884").unwrap(), ("127.0.0.1".into(), 1884, false));
        assert_eq!(parse("mqtt://broker.example").unwrap(), ("broker.example".into(), 1883, false));
        assert_eq!(parse("tcp://[::1]:1883").unwrap(), ("::1".into(), 1883, false));
        assert_eq!(parse("mqtt://broker.example:1883/").unwrap(), ("broker.example".into(), 1883, false));
        assert_eq!(parse("mqtts://broker.example").unwrap(), ("broker.example".into(), 8883, true));
        assert_eq!(parse("mqtts://127.0.0.1:18883").unwrap(), ("127.0.0.1".into(), 18883, true));
        assert_eq!(parse("ssl://[::1]").unwrap(), ("::1".into(), 8883, true));
        assert_eq!(parse("mqtts://[::1]:9883").unwrap(), ("::1".into(), 9883, true));
        for bad in ["http://x:1", "mqtt://", "mqtts://", "mqtt://x:port", "mqtt://x:0", "127.0.0.1:1883", "mqtt://a/b"]
        {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected mqtt://host:port or mqtts://host:port"), "{bad}: {e}");
        }
    }
}
