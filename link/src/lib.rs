//! How both sides of Bindwave talk to their broker, and what they share to say what went wrong.
//!
//! - [`connection`]: the MQTT link that keeps itself up (rumqttc's event loop polled in its own task), read
//!   through a bounded channel, so an owner that falls behind slows the link down instead of growing memory.
//! - [`backoff`]: the one retry rule both sides use, for reconnects and for download retries.
//! - [`broker_url`]: `mqtt://host:port` or `mqtts://host:port`, checked once with a message that says what to
//!   write; [`Failover`], the order a link tries its broker and its fallbacks in.
//! - [`tls`]: `mqtts://` with rustls: the CA the broker is verified against, and a client certificate.
//! - [`error`]: [`LinkError`], and [`error_chain`], an error and its causes on one line.
//!
//! The agent and the controller each depend on this crate; it depends on neither.

pub mod backoff;
pub mod broker_url;
pub mod connection;
pub mod error;
pub mod tls;

pub use backoff::Backoff;
pub use broker_url::{BrokerUrl, Failover};
pub use connection::{connect, Delivery, Link, LinkEvent, LinkOptions, LinkSizes};
pub use error::{chain as error_chain, LinkError};
pub use tls::TlsFiles;
