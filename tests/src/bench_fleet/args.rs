//! The bench's command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "bench-fleet",
    about = "Fleet-scale performance: rollout, its raw MQTT floor, ingest, a reconnect storm and a large \
             inventory, each beside its floor or target.",
    after_help = "Examples:\n  bench-fleet                       # 1,000 and 10,000 phones, embedded broker and Mosquitto\n  \
                  bench-fleet --devices 10000 --brokers embedded\n  \
                  bench-fleet --scale 1000,10000,18000 --only rollout,floor"
)]
pub struct Args {
    /// One fleet size (phones); the same as `--scale N`.
    #[arg(long, conflicts_with = "scale")]
    pub devices: Option<usize>,
    /// Fleet sizes to measure each figure at [default: 1000,10000].
    #[arg(long, value_delimiter = ',')]
    pub scale: Vec<usize>,
    /// The brokers to run through.
    #[arg(long, value_delimiter = ',', value_enum, default_values = ["embedded", "mosquitto"])]
    pub brokers: Vec<BrokerKind>,
    /// Only these measurements [default: all].
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<Measure>,
    /// Where the simulated phones keep their state: tmpfs, so the fleet does not contend for one disk as no
    /// real fleet does.
    #[arg(long, default_value = "/dev/shm")]
    pub phone_state_root: PathBuf,
    /// Where the controllers keep their stores: the real disk, as in production [default: the system's
    /// temporary directory].
    #[arg(long)]
    pub controller_root: Option<PathBuf>,
    /// Devices in the controller's store for the inventory measurement.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub inventory: u64,
    /// The stripped agent the agent measurement runs (`bench/fleet.sh` builds it).
    #[arg(long, default_value = "target/release-agent/bindwave-agent")]
    pub agent: PathBuf,
    /// The size of the large bind the agent downloads, verifies and installs, in GiB.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub agent_bind_gib: u32,
    #[command(subcommand)]
    pub command: Option<Sub>,
}

#[derive(Subcommand, Debug)]
pub enum Sub {
    /// Run the controller's embedded broker alone, as `bindwave serve --insecure-lab` configures it, until
    /// killed (the floor's broker). Prints `MQTT on mqtt://ADDR` once it listens.
    Broker {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BrokerKind {
    /// The broker embedded in `bindwave serve`.
    Embedded,
    /// Mosquitto, started on a free port with a minimal lab config.
    Mosquitto,
}

impl BrokerKind {
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Embedded => "embedded",
            BrokerKind::Mosquitto => "mosquitto",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Measure {
    /// The rollout to simulated phones.
    Rollout,
    /// The raw MQTT floor of the rollout's traffic.
    Floor,
    /// The controller's durable ingest of final reports.
    Ingest,
    /// The reconnect storm and its floor (embedded broker only).
    Storm,
    /// A controller holding `--inventory` devices: store size, start-up, memory, plan, status, /metrics.
    Inventory,
    /// The agent: binary size, idle RSS, bytes read for a rejected bind, and download + verify of a large
    /// bind against `curl -s URL | sha256sum`, with its peak RSS.
    Agent,
}

impl Args {
    /// The fleet sizes, in order.
    pub fn sizes(&self) -> Vec<usize> {
        match (self.devices, self.scale.is_empty()) {
            (Some(n), _) => vec![n],
            (None, true) => vec![1000, 10_000],
            (None, false) => self.scale.clone(),
        }
    }

    pub fn wants(&self, m: Measure) -> bool {
        self.only.is_empty() || self.only.contains(&m)
    }
}
