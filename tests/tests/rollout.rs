//! One rollout, end to end: `bindwave serve` with its embedded broker, three `bindwave-agent` processes,
//! binds packed and added with the CLI, outcomes read back through the API.

use std::path::Path;
use std::time::Duration;

use bindwave_tests::{wait_until, Controller, Mosquitto, Phone, Proc};
use serde_json::Value;

const TABLE: &[(&str, u16)] = &[("S30817-S7702-A101", 3), ("S30817-S7701-A101", 2)];

fn wait_for_devices(c: &Controller, n: usize) {
    wait_until(Duration::from_secs(30), "devices to say hello", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
            >= n
    });
}

/// Waits until every job of the rollout is final, and returns its status.
fn finish(c: &Controller, id: &str) -> Value {
    let mut status = Value::Null;
    wait_until(Duration::from_secs(60), &format!("rollout {id} to finish"), || {
        status = c.json(&["rollout", "status", id, "-o", "json"]);
        status["rollout"]["state"] == "finished"
    });
    status
}

fn job<'a>(status: &'a Value, device: &str) -> &'a Value {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["device"] == device)
        .unwrap_or_else(|| panic!("no job for {device}: {status:#}"))
}

fn running_version(c: &Controller, device: &str) -> String {
    let devices = c.json(&["device", "list", "-o", "json"]);
    let d = devices.as_array().unwrap().iter().find(|d| d["id"] == device).unwrap();
    d["hello"]["software_version"].as_str().unwrap().to_string()
}

#[test]
fn compatible_accepts_incompatible_reject_with_reasons_and_override_installs() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    three_phones_three_rollouts(&c, dir.path());
}

/// The same rollouts through Mosquitto: the controller and the agents use the same client code with any
/// broker.
#[test]
fn the_same_through_an_external_mosquitto_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let c = Controller::start_with(dir.path(), &dir.path().join("controller"), 0, None, Some(&broker.url));
    three_phones_three_rollouts(&c, dir.path());
}

fn three_phones_three_rollouts(c: &Controller, d: &Path) {
    let ok = Phone {
        id: "phone-ok",
        part_number: "S30817-S7702-A101",
        software_version: "V3 R3.11.0",
        minimum_software_version: "V3 R1.0.0",
    };
    let hw = Phone {
        id: "phone-hw",
        part_number: "S30817-S7701-A101",
        software_version: "V3 R3.11.0",
        minimum_software_version: "V3 R1.0.0",
    };
    let sw = Phone {
        id: "phone-sw",
        part_number: "S30817-S7702-A101",
        software_version: "V3 R3.11.0",
        minimum_software_version: "V3 R5.0.0",
    };
    let mut agents: Vec<Proc> = [&ok, &hw, &sw].iter().map(|p| p.start(d, &c.mqtt, TABLE)).collect();
    let pids: Vec<u32> = agents.iter().map(Proc::pid).collect();
    wait_for_devices(c, 3);

    // Hello carries the identity the rule needs.
    let devices = c.json(&["device", "list", "-o", "json"]);
    let hw_dev = devices.as_array().unwrap().iter().find(|d| d["id"] == "phone-hw").unwrap();
    assert_eq!(hw_dev["hello"]["hardware_level"], 2);
    assert_eq!(hw_dev["hello"]["hardware_level_source"], "part_number");

    let with_hw = c.pack_and_add(d, "with-hw", "V3 R3.18.0", Some("3,4"));
    let no_hw = c.pack_and_add(d, "no-hw", "V3 R3.18.0", None);

    // Rollout 1: the bind with the hardware-level field, to the compatible phone and the wrong hardware.
    let r1 = c.ok(&["rollout", "create", "--image", &with_hw, "--devices", "phone-ok,phone-hw"]);
    // Rollout 2: the bind without the field, to the phone whose minimum is above it.
    let r2 = c.ok(&["rollout", "create", "--image", &no_hw[..10], "--devices", "phone-sw"]);
    c.ok(&["rollout", "start", &r1]);
    c.ok(&["rollout", "start", &r2]);
    let s1 = finish(c, &r1);
    let s2 = finish(c, &r2);

    let accepted = job(&s1, "phone-ok");
    assert_eq!(accepted["phase"]["phase"], "succeeded", "{s1:#}");
    assert_eq!(accepted["phase"]["running_version"], "V3 R3.18.0");
    assert_eq!(accepted["phase"]["override_used"], false);

    let rejected_hw = job(&s1, "phone-hw");
    assert_eq!(rejected_hw["phase"]["phase"], "rejected", "{s1:#}");
    assert_eq!(rejected_hw["phase"]["reason"]["code"], "hardware_level_incompatible");
    assert_eq!(rejected_hw["phase"]["reason"]["device_level"], 2);
    assert_eq!(rejected_hw["phase"]["reason"]["bind_levels"], serde_json::json!([3, 4]));
    assert_eq!(rejected_hw["phase"]["running_version"], "V3 R3.11.0");
    assert_eq!(s1["counts"]["succeeded"], 1);
    assert_eq!(s1["counts"]["rejected_hardware"], 1);

    let rejected_sw = job(&s2, "phone-sw");
    assert_eq!(rejected_sw["phase"]["phase"], "rejected", "{s2:#}");
    assert_eq!(rejected_sw["phase"]["reason"]["code"], "software_level_below_minimum");
    assert_eq!(rejected_sw["phase"]["reason"]["bind_version"], "V3 R3.18.0");
    assert_eq!(rejected_sw["phase"]["reason"]["minimum"], "V3 R5.0.0");
    assert_eq!(s2["counts"]["rejected_software"], 1);

    // The installed phone runs the new version from its new slot; the rejecting ones run the old one, in the
    // same process (no restart).
    wait_until(Duration::from_secs(10), "the new version in hello", || running_version(c, "phone-ok") == "V3 R3.18.0");
    let active: Value = serde_json::from_slice(&std::fs::read(d.join("phone-ok/active")).unwrap()).unwrap();
    assert_eq!(active["version"], "V3 R3.18.0");
    let slot = active["slot"].as_str().unwrap();
    let installed = std::fs::read(d.join(format!("phone-ok/slots/{slot}/payload"))).unwrap();
    assert_eq!(installed, std::fs::read(d.join("with-hw.img")).unwrap());
    for (i, id) in [(1, "phone-hw"), (2, "phone-sw")] {
        assert_eq!(running_version(c, id), "V3 R3.11.0");
        assert!(!d.join(id).join("active").exists(), "{id} switched slots");
        assert!(agents[i].alive(), "{id} exited");
        assert_eq!(agents[i].pid(), pids[i]);
    }

    // Rollout 3: the same bind with Override makes the hardware-incompatible phone accept, and says so.
    let r3 = c.ok(&[
        "rollout",
        "create",
        "--image",
        &with_hw,
        "--devices",
        "phone-hw",
        "--override",
        "--reason",
        "lab phone",
        "--start",
    ]);
    let s3 = finish(c, &r3);
    let forced = job(&s3, "phone-hw");
    assert_eq!(forced["phase"]["phase"], "succeeded", "{s3:#}");
    assert_eq!(forced["phase"]["override_used"], true);
    wait_until(Duration::from_secs(10), "the overridden install in hello", || {
        running_version(c, "phone-hw") == "V3 R3.18.0"
    });

    // The human view says the same.
    let table = c.ok(&["rollout", "status", &r1]);
    assert!(
        table.contains("hardware_level_incompatible: hardware level 2 is not among the bind's supported levels [3, 4]"),
        "{table}"
    );
}
