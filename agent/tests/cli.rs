//! `bindwave-agent` refuses a bad config with a message that names what is wrong.

use std::process::{Command, Output};

fn agent_with(config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_bindwave-agent"))
        .args(["run", "--config", path.to_str().unwrap()])
        .output()
        .unwrap()
}

const GOOD: &str = r#"
device_id = "phone-1"
part_number = "P1"
software_version = "V3 R3.0.0"
minimum_software_version = "V3 R1.0.0"
state_dir = "/tmp/bindwave-agent-never-used"

[broker]
url = "mqtt://127.0.0.1:1"

[hardware_levels]
P1 = 3

[trust]
controller_keys = ["ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12"]
insecure_lab = true
"#;

fn fails_with(config: &str, needle: &str) {
    let o = agent_with(config);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn no_pinned_controller_key_refuses_to_start_naming_the_key_to_set() {
    let bare = GOOD.split("[trust]").next().unwrap();
    fails_with(bare, "`controller_keys` in [trust]");
}

#[test]
fn missing_config_file() {
    let o = Command::new(env!("CARGO_BIN_EXE_bindwave-agent"))
        .args(["run", "--config", "/nonexistent/agent.toml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read agent config /nonexistent/agent.toml"));
}

#[test]
fn unknown_part_number() {
    fails_with(&GOOD.replace("P1 = 3", "P2 = 3"), "no hardware level for part number \"P1\"");
}

#[test]
fn misspelled_key() {
    fails_with(&GOOD.replace("state_dir", "statedir"), "statedir");
}

#[test]
fn bad_version() {
    fails_with(&GOOD.replace("\"V3 R1.0.0\"", "\"one\""), "expected e.g.");
}

#[test]
fn bad_broker_url() {
    fails_with(&GOOD.replace("mqtt://127.0.0.1:1", "http://127.0.0.1:1"), "expected mqtt://host:port");
}

#[test]
fn bad_device_id() {
    fails_with(&GOOD.replace("phone-1", "phone/1"), "invalid device id");
}
