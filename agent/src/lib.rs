//! The Bindwave agent: runs on each phone.
//!
//! It takes update commands over MQTT, downloads the bind, decides from its header whether the bind is for
//! this phone (the rule in [`bindwave_proto::compat`]), checks size and digests as the bytes stream in,
//! installs into the inactive slot and switches slots atomically, and reports each step and the outcome.
//!
//! - [`cli`]: the `bindwave-agent` command line (clap), public so the controller can render the agent's man page
//!   and shell completions from it.
//! - [`config`]: the agent's TOML configuration (every key in `agent/agent.example.toml`), its overrides
//!   (environment, flags), its checks (through `bindwave_settings`), and the identity it resolves, with the
//!   hardware probe run once at start.
//! - [`slots`]: the A/B slot installer on disk.
//! - [`hooks`]: the phone's own programs: reboot, health check, indicator.
//! - [`indicator`]: the update-in-progress indication and `status.json`.
//! - [`fetch`]: the download: streamed, judged on its header, resumed (HTTP Range, FTP REST).
//! - [`transport`]: the HTTP and FTP clients and the one TLS trust they share (platform roots + fleet CA).
//! - [`journal`]: final reports kept on disk until the controller acknowledges them.
//! - [`link`]: the MQTT connection (rumqttc, polled in its own task, with jittered backoff); the controller
//!   uses it too.
//! - [`agent`]: the event loop that ties them together.

pub mod agent;
pub mod cli;
pub mod config;
mod error;
pub mod fetch;
pub mod hooks;
pub mod indicator;
pub mod journal;
pub mod link;
pub mod slots;
pub mod status;
pub mod transport;

pub use agent::Agent;
pub use config::AgentConfig;
pub use error::{chain as error_chain, AgentError};
pub use transport::Transport;

/// This agent's version, reported in hello.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
