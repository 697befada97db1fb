//! The Bindwave controller: device inventory, images, rollouts, the HTTP API, metrics, the embedded MQTT
//! broker, and the operators' CLI.
//!
//! - [`engine`]: the rollout engine, a pure state machine over [`model`] records; [`schedule`] is when its
//!   commands may go (maintenance windows in the phones' time zones, rates and ramps), pure too.
//! - [`service`]: the engine wrapped in IO: MQTT link, group-committed [`store`], the [`api`], which reaches
//!   the core task through its [`handle`]; [`clock`] is the only place that reads the time.
//! - [`broker`]: the embedded rmqtt broker: TLS, authenticated clients, a lane per device ([`broker::acl`]).
//! - [`certs`]: the development PKI (`bindwave certs dev`, and `data_dir/tls/` at first start).
//! - [`cli`], [`client`], [`images`]: the `bindwave` command.
//! - `demo`, `fleet` (feature `sim`, on by default): the simulated fleet, real agents in-process. A build
//!   without it (`--no-default-features`) links none of the phone's code.

pub mod api;
pub mod backup;
pub mod broker;
pub mod certs;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
#[cfg(feature = "sim")]
pub mod demo;
pub mod engine;
mod error;
#[cfg(feature = "sim")]
pub mod fleet;
pub mod handle;
pub mod http_server;
pub mod images;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod prometheus;
#[cfg(test)]
mod scenarios;
pub mod schedule;
pub mod service;
pub mod store;
mod table;
mod text_serde;
pub mod tls;
pub mod token_store;
pub mod tokens;
pub mod webhooks;

pub use error::{chain as error_chain, ControllerError};

/// Raises this process's soft limit of open files to its hard limit: a controller with an embedded broker
/// holds a socket per device, and the demo holds both ends.
pub fn raise_open_files_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open files limit: {e}");
    }
}
