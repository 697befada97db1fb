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
//! - [`core`]: the agent's decisions, a pure state machine: an input (a command, the link, a job's progress and
//!   end, the retry timer, the restart) in, actions (persist, publish, show, start a job) out. No IO.
//! - [`agent`]: the driver: the event loop that feeds the core and carries out its actions.
//! - `job`: one job's work in its own task: download, install, restart and health check.
//! - [`fetch`]: the download: streamed, judged on its header, resumed (HTTP Range, FTP REST).
//! - [`trust`]: the release keys a phone pins, and the decision on a bind's signature, made on its header.
//! - [`transport`]: the HTTP and FTP clients and the one TLS trust they share (platform roots + fleet CA).
//! - [`slots`]: the A/B slot installer on disk.
//! - [`storage`]: files replaced atomically and synced ([`Durability`]: always full on a phone).
//! - [`journal`]: the job in hand, the install awaiting its health check, and final reports kept on disk until
//!   the controller acknowledges them.
//! - [`hooks`]: running the phone's own programs (reboot, health check, installer, indicator command) with a
//!   timeout.
//! - [`indicator`]: the update-in-progress indication and `status.json`.
//! - [`status`]: `bindwave-agent status`, what a technician at the phone needs to know, read from the state
//!   directory.
//!
//! The MQTT link (rumqttc polled in its own task, reconnecting with backoff) is the shared `bindwave_link`.

pub mod agent;
pub mod cli;
pub mod config;
pub mod core;
mod error;
pub mod fetch;
pub mod hooks;
pub mod indicator;
mod job;
pub mod journal;
pub mod slots;
pub mod status;
pub mod storage;
pub mod transport;
pub mod trust;

pub use agent::Agent;
pub use config::AgentConfig;
pub use error::{chain as error_chain, AgentError};
pub use storage::Durability;
pub use transport::Transport;

/// This agent's version, reported in hello.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
