//! A rollout's wall time over a cluster of three rmqtt nodes (`broker-node`, rmqtt-cluster-broadcast) against
//! the same rollout over one broker (the controller's embedded rmqtt, with the same limits), with the same
//! simulated fleet (state on tmpfs when /dev/shm exists, as real phones each have their own flash). The
//! controller is in lab mode; on the cluster it connects to node 1 and the phones are spread over the three.
//!
//! Run with `bench/cluster.sh [PHONES]` (it builds what this needs in release mode first).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bindwave_tests::cluster::BrokerCluster;
use bindwave_tests::{bin, wait_until, Controller, Proc};

fn online(c: &Controller) -> usize {
    c.json(&["device", "list", "-o", "json"]).as_array().map_or(0, |d| d.iter().filter(|d| d["online"] == true).count())
}

/// Seconds from `rollout create --start` to `finished`, with `phones` phones over `nodes` cluster nodes, or over
/// the controller's embedded broker for `nodes == 1`.
fn rollout_secs(dir: &Path, nodes: usize, phones: usize) -> f64 {
    let mut cluster = (nodes > 1).then(|| BrokerCluster::start(dir, nodes));
    let c = match &cluster {
        Some(cluster) => Controller::start_with(dir, &dir.join("controller"), 0, None, Some(&cluster.urls[0])),
        None => Controller::start(dir),
    };
    let urls = cluster.as_ref().map_or_else(|| vec![c.mqtt.clone()], |cluster| cluster.urls.clone());
    let state = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").expect("a tmpfs directory").keep()
    } else {
        dir.join("fleet")
    };
    let mut cmd = Command::new(bin("bindwave"));
    cmd.args(["simulate", "--devices", &phones.to_string(), "--broker", &urls.join(","), "--state-dir"]).arg(&state);
    let fleet = Proc::spawn("fleet", cmd, dir);
    wait_until(Duration::from_secs(300), &format!("{phones} phones online"), || online(&c) >= phones);
    let image = c.pack_and_add(dir, "bench", "V3 R3.18.0", None);
    let start = Instant::now();
    let id = c.ok(&["rollout", "create", "--image", &image, "--all", "--start"]);
    wait_until(Duration::from_secs(900), &format!("rollout {id} to finish"), || {
        c.json(&["rollout", "status", &id, "-o", "json"])["rollout"]["state"] == "finished"
    });
    let secs = start.elapsed().as_secs_f64();
    drop(fleet);
    drop(c);
    for node in cluster.iter_mut().flat_map(|cluster| cluster.nodes.iter_mut()) {
        node.kill();
    }
    let _ = std::fs::remove_dir_all(&state);
    secs
}

fn main() {
    let phones: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let one = tempfile::tempdir().expect("a temporary directory");
    let three = tempfile::tempdir().expect("a temporary directory");
    let single = rollout_secs(one.path(), 1, phones);
    let clustered = rollout_secs(three.path(), 3, phones);
    println!("rollout to {phones} simulated phones, one QoS 1 command and its reports each, controller on node 1:");
    println!("  one rmqtt broker (the controller's own):     {single:>7.2} s");
    println!(
        "  three rmqtt nodes (rmqtt-cluster-broadcast): {clustered:>7.2} s  ({:.2}x one node)",
        clustered / single
    );
}
