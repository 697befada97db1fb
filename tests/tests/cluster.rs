//! A fleet beyond one broker: three rmqtt nodes clustered with rmqtt's own `rmqtt-cluster-broadcast` plugin, each
//! a process of its own (`broker-node`), in lab mode. The controller connects to node 1; the simulated phones
//! are spread over the three nodes, each with the other two as fallbacks. A rollout completes across the
//! cluster; then node 3, which carries a third of the phones, is killed in the middle of a second rollout, and
//! every phone still ends with exactly one final outcome at the controller: its phones reconnect to another
//! node, say hello again, get the work still owed and report.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bindwave_tests::cluster::BrokerCluster;
use bindwave_tests::{bin, wait_until, Controller, Proc};
use serde_json::Value;

/// Phones; phone `i` (0-based) is on node `i % 3 + 1`.
const N: usize = 30;
const NODES: usize = 3;

fn phone(i: usize) -> String {
    format!("phone-{:05}", i + 1)
}

/// Phones whose minimum software version (V3 R5.0.0) is above the binds': they reject them.
fn rejects(i: usize) -> bool {
    i % 7 == 6
}

fn online(c: &Controller) -> usize {
    c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
}

/// Waits for the rollout to finish, and says which jobs were still open if it does not.
fn wait_finished(c: &Controller, id: &str, secs: u64) -> Value {
    let start = std::time::Instant::now();
    loop {
        let s = c.json(&["rollout", "status", id, "-o", "json"]);
        if s["rollout"]["state"] == "finished" {
            return s;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let open: Vec<String> = jobs(&s)
                .iter()
                .filter(|(_, phase)| !is_final(phase))
                .map(|(device, phase)| format!("{device}: {phase}"))
                .collect();
            panic!(
                "rollout {id} not finished after {secs}s: {:#}\ncounts {:#}\nopen jobs: {open:#?}",
                s["rollout"], s["counts"]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (device, phase) of every job of a rollout status.
fn jobs(status: &Value) -> Vec<(String, String)> {
    status["jobs"]
        .as_array()
        .expect("jobs in the rollout status")
        .iter()
        .map(|j| (j["device"].as_str().unwrap().to_string(), j["phase"]["phase"].as_str().unwrap().to_string()))
        .collect()
}

fn is_final(phase: &str) -> bool {
    matches!(phase, "succeeded" | "rejected" | "failed" | "timed_out" | "cancelled")
}

/// Every phone has exactly one job in the rollout, and it ended as the phone's compatibility says: installed,
/// or rejected for its software level. Nothing lost, nothing twice, nothing failed or timed out.
fn assert_one_outcome_each(status: &Value) {
    let mut by_device: HashMap<String, Vec<String>> = HashMap::new();
    for (device, phase) in jobs(status) {
        by_device.entry(device).or_default().push(phase);
    }
    for i in 0..N {
        let id = phone(i);
        let expected = if rejects(i) { "rejected" } else { "succeeded" };
        let phases = by_device.get(&id).cloned().unwrap_or_default();
        assert_eq!(phases, [expected], "{id} (node {}): {:#}", i % NODES + 1, status["counts"]);
    }
    assert_eq!(by_device.len(), N, "jobs for devices outside the fleet: {by_device:?}");
    let sw_low = (0..N).filter(|&i| rejects(i)).count();
    assert_eq!(status["counts"]["succeeded"], N - sw_low, "{:#}", status["counts"]);
    assert_eq!(status["counts"]["rejected_software"], sw_low, "{:#}", status["counts"]);
}

/// `bindwave simulate` over every node of the cluster: phone `i` on node `i % 3 + 1`, the others its fallbacks.
fn simulate(dir: &Path, cluster: &BrokerCluster) -> Proc {
    let mut cmd = Command::new(bin("bindwave"));
    cmd.args(["simulate", "--devices", &N.to_string(), "--broker", &cluster.urls.join(","), "--state-dir"])
        .arg(dir.join("fleet"));
    Proc::spawn("fleet", cmd, dir)
}

#[test]
fn a_rollout_over_a_broker_cluster_completes_and_survives_losing_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let began = std::time::Instant::now();
    let mark = |what: &str| eprintln!("cluster test: {what} at {:.1} s", began.elapsed().as_secs_f64());
    let mut cluster = BrokerCluster::start(d, NODES);
    // A lab-mode controller (plain MQTT, unsigned images) on node 1, as on an external broker.
    let c = Controller::start_with(d, &d.join("controller"), 0, None, Some(&cluster.urls[0]));
    let _fleet = simulate(d, &cluster);
    wait_until(Duration::from_secs(60), &format!("{N} phones online through the cluster"), || online(&c) >= N);
    mark("every phone online");

    // 1. A rollout to the whole fleet: commands go out on node 1 and reach the phones on nodes 2 and 3 through
    // the cluster; their reports come back the same way.
    let first = c.pack_and_add(d, "first", "V3 R3.18.0", None);
    let r1 = c.ok(&["rollout", "create", "--image", &first, "--all", "--start"]);
    let s1 = wait_finished(&c, &r1, 120);
    assert_one_outcome_each(&s1);
    mark("the first rollout finished");

    // 2. Node 3 dies in the middle of a rollout that updates a few phones at a time.
    let second = c.pack_and_add(d, "second", "V3 R3.19.0", None);
    let r2 = c.ok(&["rollout", "create", "--image", &second, "--all", "--max-concurrent", "3", "--start"]);
    // Mid-rollout: some phones have their outcome, and some of node 3's phones do not yet.
    let node3: Vec<String> = (0..N).filter(|i| i % NODES == 2).map(phone).collect();
    wait_until(Duration::from_secs(60), "the second rollout to be under way", || {
        let s = c.json(&["rollout", "status", &r2, "-o", "json"]);
        let j = jobs(&s);
        j.iter().any(|(_, p)| is_final(p)) && j.iter().any(|(d, p)| node3.contains(d) && !is_final(p))
    });
    cluster.kill(3);
    assert!(!cluster.nodes[2].alive(), "node 3 still runs");
    mark("node 3 killed");

    let s2 = wait_finished(&c, &r2, 180);
    assert_one_outcome_each(&s2);
    mark("the second rollout finished");
    // Node 3's phones are back, on nodes 1 and 2, running what they reported.
    let running = |id: &str| -> (bool, String) {
        let devices = c.json(&["device", "list", "-o", "json"]);
        let dev = devices.as_array().unwrap().iter().find(|x| x["id"] == id).cloned().unwrap_or_default();
        (dev["online"] == true, dev["hello"]["software_version"].as_str().unwrap_or_default().to_string())
    };
    for i in (0..N).filter(|i| i % NODES == 2) {
        let id = phone(i);
        let expected = if rejects(i) { "V3 R2.9.0" } else { "V3 R3.19.0" };
        wait_until(Duration::from_secs(30), &format!("{id} online, running {expected}"), || {
            running(&id) == (true, expected.to_string())
        });
    }
}
