//! The node's command line refuses a node list it cannot join, saying what to write. (Also: `cargo test
//! --workspace` builds the `broker-node` binary that the cluster test runs because this package has a test.)

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_broker-node")).args(args).output().expect("run broker-node");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_node_list_without_this_node_or_with_one_node_is_refused() {
    let (ok, err) = run(&["--node-id", "3", "--node", "1@127.0.0.1:1,2@127.0.0.1:2"]);
    assert!(!ok);
    assert!(err.contains("node 3 is not in --node: list every node of the cluster, this one included"), "{err}");
    let (ok, err) = run(&["--node-id", "1", "--node", "1@127.0.0.1:1"]);
    assert!(!ok);
    assert!(err.contains("a cluster needs two at least"), "{err}");
    let (ok, err) = run(&["--node-id", "1", "--node", "127.0.0.1:1"]);
    assert!(!ok);
    assert!(err.contains("is not ID@HOST:PORT"), "{err}");
}
