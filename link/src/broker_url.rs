//! Broker URLs: `mqtt://host:port`, read once, with a message that says what to write instead.

use crate::LinkError;

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    /// Reads `mqtt://host:port`. The port defaults to 1883; `tcp://` is accepted as a synonym; an IPv6 host
    /// is written in brackets (`mqtt://[::1]:1883`).
    pub fn parse(url: &str) -> Result<BrokerUrl, LinkError> {
        let err = |reason: &str| LinkError::BrokerUrl { url: url.to_string(), reason: reason.to_string() };
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
        Ok(BrokerUrl { host: host.to_string(), port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<(String, u16), LinkError> {
        BrokerUrl::parse(url).map(|b| (b.host, b.port))
    }

    #[test]
    fn broker_urls() {
        assert_eq!(parse("mqtt://127.0.0.1:1884").unwrap(), ("127.0.0.1".into(), 1884));
        assert_eq!(parse("mqtt://broker.example").unwrap(), ("broker.example".into(), 1883));
        assert_eq!(parse("tcp://[::1]:1883").unwrap(), ("::1".into(), 1883));
        assert_eq!(parse("mqtt://broker.example:1883/").unwrap(), ("broker.example".into(), 1883));
        for bad in ["http://x:1", "mqtt://", "mqtt://x:port", "mqtt://x:0", "127.0.0.1:1883", "mqtt://a/b"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected mqtt://host:port"), "{bad}: {e}");
        }
    }
}
