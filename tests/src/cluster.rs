//! A cluster of `broker-node` processes (rmqtt brokers joined by rmqtt's `rmqtt-cluster-broadcast` plugin),
//! in lab mode: plain MQTT, anonymous clients. For the cluster test and `bench/cluster.sh`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{bin, free_port, Proc};

/// How long a node may take to say it listens.
const NODE_START: Duration = Duration::from_secs(30);

pub struct BrokerCluster {
    /// The nodes' processes, node `i + 1` at index `i`.
    pub nodes: Vec<Proc>,
    /// Each node's MQTT URL, `mqtt://127.0.0.1:PORT`, in the same order.
    pub urls: Vec<String>,
}

impl BrokerCluster {
    /// Starts `n` nodes, ids 1..=n, each a process of its own. The gRPC ports the nodes reach each other on are
    /// chosen before any starts (each must know the others'), so a port another process took meanwhile fails
    /// that node: the whole cluster is then started again on other ports.
    pub fn start(dir: &Path, n: usize) -> BrokerCluster {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(dir, n) {
                Ok(cluster) => return cluster,
                Err(why) => last = why,
            }
        }
        panic!("the broker cluster did not start: {last}");
    }

    fn try_start(dir: &Path, n: usize) -> Result<BrokerCluster, String> {
        let nodes: Vec<String> = (1..=n).map(|id| format!("{id}@127.0.0.1:{}", free_port())).collect();
        let list = nodes.join(",");
        let mut procs = Vec::with_capacity(n);
        for id in 1..=n {
            let mut cmd = Command::new(bin("broker-node"));
            cmd.args(["--node-id", &id.to_string(), "--mqtt-listen", "127.0.0.1:0", "--node", &list]);
            procs.push(Proc::spawn(&format!("node{id}"), cmd, dir));
        }
        let mut urls = Vec::with_capacity(n);
        for (i, proc) in procs.iter_mut().enumerate() {
            let prefix = format!("broker-node {}: MQTT on ", i + 1);
            let start = Instant::now();
            let url = loop {
                let heard = proc.log_text().lines().find_map(|l| {
                    let rest = l.strip_prefix(&prefix)?;
                    Some(rest.split_once(", gRPC on ").map_or(rest, |(mqtt, _)| mqtt).trim().to_string())
                });
                if let Some(url) = heard {
                    break url;
                }
                if !proc.alive() {
                    return Err(format!("node {} exited at start:\n{}", i + 1, proc.log_text()));
                }
                if start.elapsed() > NODE_START {
                    panic!("node {} did not say where it listens within {NODE_START:?}:\n{}", i + 1, proc.log_text());
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            urls.push(url);
        }
        Ok(BrokerCluster { nodes: procs, urls })
    }

    /// SIGKILLs node `id` (1-based), as a crashed machine.
    pub fn kill(&mut self, id: usize) {
        self.nodes[id - 1].kill();
    }
}
