//! A cluster of `broker-node` processes (rmqtt brokers joined by rmqtt's `rmqtt-cluster-broadcast` plugin),
//! in lab mode: plain MQTT, anonymous clients. For the cluster test and `bench/cluster.sh`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{bin, free_port, Proc};

/// How long a node may take to say it listens.
const NODE_START: Duration = Duration::from_secs(30);
/// How long the nodes may take to reach one another once they listen.
const MESH: Duration = Duration::from_secs(30);

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
        // A node listens before it has reached its peers: a message published on one may not reach another's
        // clients yet. A cluster is ready once every node's messages reach every other node.
        meshed(&urls)?;
        Ok(BrokerCluster { nodes: procs, urls })
    }

    /// SIGKILLs node `id` (1-based), as a crashed machine.
    pub fn kill(&mut self, id: usize) {
        self.nodes[id - 1].kill();
    }
}

/// Waits until a message published on any node reaches a subscriber on every node: each node publishes its
/// number every 100 ms on a probe topic, and one subscriber on each node notes whom it heard.
fn meshed(urls: &[String]) -> Result<(), String> {
    use rumqttc::{Client, Event, Packet, QoS};
    use std::collections::BTreeSet;
    let client = |url: &str, id: String| Client::new(crate::plain_mqtt_options(url, &id), 64);
    let n = urls.len();
    let (heard_tx, heard_rx) = std::sync::mpsc::channel::<(usize, usize)>();
    let mut subscribers = Vec::new();
    for (j, url) in urls.iter().enumerate() {
        let (c, mut conn) = client(url, format!("mesh-listener-{j}"));
        c.subscribe("bindwave-mesh/+", QoS::AtMostOnce).map_err(|e| e.to_string())?;
        let tx = heard_tx.clone();
        subscribers.push(c);
        std::thread::spawn(move || {
            for event in conn.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Ok(i) = String::from_utf8_lossy(&p.payload).parse::<usize>() {
                            if tx.send((i, j)).is_err() {
                                return;
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
    }
    let mut publishers = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let (c, mut conn) = client(url, format!("mesh-speaker-{i}"));
        publishers.push(c);
        std::thread::spawn(move || {
            for event in conn.iter() {
                if event.is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
    }
    let mut heard = BTreeSet::new();
    let start = Instant::now();
    let result = loop {
        for (i, c) in publishers.iter().enumerate() {
            let _ = c.try_publish(format!("bindwave-mesh/{i}"), QoS::AtMostOnce, false, i.to_string());
        }
        while let Ok(pair) = heard_rx.recv_timeout(Duration::from_millis(100)) {
            heard.insert(pair);
        }
        if heard.len() == n * n {
            break Ok(());
        }
        if start.elapsed() > MESH {
            let missing: Vec<String> = (0..n)
                .flat_map(|i| (0..n).map(move |j| (i, j)))
                .filter(|p| !heard.contains(p))
                .map(|(i, j)| format!("node {} to node {}", i + 1, j + 1))
                .collect();
            break Err(format!("the nodes did not reach one another within {MESH:?}: {}", missing.join(", ")));
        }
    };
    for c in subscribers.iter().chain(&publishers) {
        let _ = c.disconnect();
    }
    result
}
