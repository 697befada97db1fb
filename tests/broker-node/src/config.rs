//! The cluster plugin's config for one node, from the node list given on the command line. No IO.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use rmqtt::context::{CircuitBreakerConfig, TimeBasedWindowConfig, WindowConfig};

/// The name rmqtt-cluster-broadcast registers under (its crate name) and reads its config by.
pub const PLUGIN: &str = "rmqtt-cluster-broadcast";

/// How long a node waits for a peer to connect or answer. Every message published on a node waits for every
/// peer's answer (rmqtt-cluster-broadcast 0.24 gathers the peers' shared-subscription matches), and so does
/// every subscription (for the peers' retained messages): with rmqtt's default of 60 s, a dead peer held each
/// publisher to one message a minute until the circuit breaker opened.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// When a node stops calling a peer: half of its calls in the last 5 s failed (5 calls at least); it tries
/// again after 30 s. rmqtt's default looks at a 45 s window, and a dead peer held every publisher to one message
/// per [`PEER_TIMEOUT`] until it opened (measured: 45 s after a node was killed, in the cluster test). A peer
/// that is slow under load trips it too, and then misses what is published for 30 s; the fleet's own retries
/// (hello on reconnect, final reports repeated until acknowledged) carry what matters.
pub fn circuit_breaker() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        failure_rate_threshold: 0.5,
        window: WindowConfig::TimeBased(TimeBasedWindowConfig {
            sliding_window_duration: Duration::from_secs(5),
            sliding_window_size: 20,
        }),
        minimum_number_of_calls: 5,
        ..CircuitBreakerConfig::default()
    }
}

/// One node of the cluster: its id and its gRPC address, written `ID@HOST:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddr {
    pub id: u64,
    pub grpc: SocketAddr,
}

impl FromStr for NodeAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (id, addr) =
            s.split_once('@').ok_or_else(|| format!("{s:?} is not ID@HOST:PORT (e.g. 2@127.0.0.1:5364)"))?;
        let id = id.parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            format!("{s:?}: the node id {id:?} is not a whole number from 1 up (e.g. 2@127.0.0.1:5364)")
        })?;
        let grpc = addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("{s:?}: the gRPC address {addr:?} is not IP:PORT ({e}; e.g. 2@127.0.0.1:5364)"))?;
        Ok(NodeAddr { id, grpc })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.grpc)
    }
}

/// What is wrong with a node list.
#[derive(Debug, PartialEq, Eq)]
pub enum ClusterError {
    /// This node's id is not in the list.
    NotListed { id: u64 },
    /// Two entries share an id.
    DuplicateId { id: u64 },
    /// A cluster of one is a single broker: use the controller's embedded one.
    Alone,
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::NotListed { id } => {
                write!(f, "node {id} is not in --node: list every node of the cluster, this one included")
            }
            ClusterError::DuplicateId { id } => write!(f, "node id {id} is given twice in --node"),
            ClusterError::Alone => {
                write!(f, "--node lists one node: a cluster needs two at least (list every node, this one included)")
            }
        }
    }
}

impl std::error::Error for ClusterError {}

/// This node's gRPC address, and the plugin's TOML config for a cluster of `nodes` (this one included).
pub fn plugin_config(id: u64, nodes: &[NodeAddr]) -> Result<(SocketAddr, String), ClusterError> {
    for (i, n) in nodes.iter().enumerate() {
        if nodes[..i].iter().any(|m| m.id == n.id) {
            return Err(ClusterError::DuplicateId { id: n.id });
        }
    }
    let me = nodes.iter().find(|n| n.id == id).ok_or(ClusterError::NotListed { id })?;
    if nodes.len() < 2 {
        return Err(ClusterError::Alone);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| format!("{:?}", n.to_string())).collect();
    let toml = format!(
        "node_grpc_addrs = [{}]\nnode_grpc_client_timeout = \"{}s\"\n",
        addrs.join(", "),
        PEER_TIMEOUT.as_secs()
    );
    Ok((me.grpc, toml))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[&str]) -> Vec<NodeAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_node_list_gives_the_plugin_every_node_and_this_one_its_address() {
        let list = nodes(&["1@127.0.0.1:5363", "2@127.0.0.1:5364", "3@127.0.0.1:5365"]);
        let (grpc, toml) = plugin_config(2, &list).unwrap();
        assert_eq!(grpc, "127.0.0.1:5364".parse().unwrap());
        assert_eq!(
            toml,
            "node_grpc_addrs = [\"1@127.0.0.1:5363\", \"2@127.0.0.1:5364\", \"3@127.0.0.1:5365\"]\n\
             node_grpc_client_timeout = \"3s\"\n"
        );
    }

    #[test]
    fn bad_lists_are_refused_with_what_to_write() {
        let list = nodes(&["1@127.0.0.1:5363", "2@127.0.0.1:5364"]);
        assert_eq!(plugin_config(3, &list), Err(ClusterError::NotListed { id: 3 }));
        assert_eq!(plugin_config(1, &nodes(&["1@127.0.0.1:1"])), Err(ClusterError::Alone));
        let twice = nodes(&["1@127.0.0.1:5363", "1@127.0.0.1:5364"]);
        assert_eq!(plugin_config(1, &twice), Err(ClusterError::DuplicateId { id: 1 }));
        for bad in ["127.0.0.1:5363", "0@127.0.0.1:5363", "x@127.0.0.1:5363", "1@localhost", "1@127.0.0.1"] {
            let e = bad.parse::<NodeAddr>().unwrap_err();
            assert!(e.contains("e.g. 2@127.0.0.1:5364"), "{bad}: {e}");
        }
    }
}
