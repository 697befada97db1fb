//! `broker-node`: one node of a cluster of rmqtt brokers, joined by rmqtt's own `rmqtt-cluster-broadcast`
//! plugin, with the limits and the retainer of the controller's embedded broker, in lab mode (plain MQTT,
//! anonymous clients, no topic rules).
//!
//! ```text
//! broker-node --node-id 1 --mqtt-listen 127.0.0.1:1883 --node 1@127.0.0.1:5363,2@127.0.0.1:5364,3@127.0.0.1:5365
//! ```
//!
//! It prints `broker-node N: MQTT on mqtt://ADDR, gRPC on ADDR` once it listens. The cluster test
//! (`tests/tests/cluster.rs`) and `bench/cluster.sh` run three. Nodes talk plain, unauthenticated gRPC to each
//! other (rmqtt 0.24 has no TLS there), which is why this is a test and benchmark tool and not a `bindwave`
//! command: see `docs/cluster.md`.

mod config;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bindwave_controller::broker::{BrokerAccess, BrokerConfig, ClusterNode, EmbeddedBroker};
use clap::Parser;

use config::NodeAddr;

/// One node of an rmqtt broker cluster, in lab mode.
#[derive(Parser)]
#[command(name = "broker-node")]
struct Args {
    /// This node's id: one of the ids in --node.
    #[arg(long)]
    node_id: u64,
    /// Where to listen for MQTT (plain, anonymous); port 0 picks a free one, printed at start.
    #[arg(long, default_value = "127.0.0.1:0")]
    mqtt_listen: SocketAddr,
    /// Every node of the cluster, this one included, as ID@HOST:PORT (its gRPC address); repeat the flag or
    /// separate with commas.
    #[arg(long = "node", value_delimiter = ',', required = true)]
    nodes: Vec<NodeAddr>,
}

/// How long the node waits for its own gRPC server to accept.
const GRPC_START: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args = Args::parse();
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let filter = bindwave_settings::log_filter(&filter).unwrap_or_else(|e| {
        eprintln!("warning: RUST_LOG: {e}; logging warnings only");
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
    });
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let id = args.node_id;
    let (grpc, plugin_toml) = config::plugin_config(id, &args.nodes)?;
    // rmqtt's gRPC server only logs a port it cannot bind: try it first, for an error that stops the start.
    drop(TcpListener::bind(grpc).with_context(|| format!("cannot listen for gRPC on {grpc} (node {id} in --node)"))?);

    let node = ClusterNode {
        id,
        plugin_configs: vec![(config::PLUGIN.to_string(), plugin_toml)],
        circuit_breaker: config::circuit_breaker(),
        join: Box::new(move |scx| {
            Box::pin(async move {
                // reuseaddr, as the MQTT listener, so a node restarted at once gets its port back.
                scx.node.start_grpc_server(scx.clone(), grpc, true, false);
                // default_startup = true: start now; immutable = true: a cluster plugin cannot be stopped.
                rmqtt_cluster_broadcast::register(&scx, true, true).await
            })
        }),
    };
    let config =
        BrokerConfig { listen: args.mqtt_listen, access: BrokerAccess::InsecureLab, ..BrokerConfig::default() };
    let broker = EmbeddedBroker::start_node(config, Some(node)).await?;
    wait_for_grpc(grpc).await?;
    println!("broker-node {id}: MQTT on mqtt://{}, gRPC on {grpc}", broker.local_addr());

    bindwave_controller::cli::shutdown_signal().await;
    broker.shutdown().await;
    Ok(())
}

/// Waits until the node's gRPC server accepts a connection.
async fn wait_for_grpc(grpc: SocketAddr) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&grpc, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > GRPC_START {
            bail!("the node's gRPC server did not listen on {grpc} within {}s", GRPC_START.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
