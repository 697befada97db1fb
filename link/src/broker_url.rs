//! Broker URLs: `mqtt://host:port` or `mqtts://host:port`, read once, with a message that says what to write
//! instead.

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

#[cfg(test)]
mod tests {
    use super::*;

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
