//! The MQTT link, from the shared `bindwave-link` crate.

pub use bindwave_link::{connect, Link, LinkEvent, LinkOptions};

use crate::AgentError;

/// Splits `mqtt://host:port` (see [`bindwave_link::BrokerUrl::parse`]).
pub fn parse_broker_url(url: &str) -> Result<(String, u16), AgentError> {
    let b = bindwave_link::BrokerUrl::parse(url)?;
    Ok((b.host, b.port))
}
