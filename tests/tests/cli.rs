//! The operators' CLI against a real controller and phones: the documented exit codes, one test each, and
//! snapshots of what people read (tables) and scripts parse (JSON, YAML). A change to any of them shows up as
//! a snapshot diff to review (`cargo insta review`, or `INSTA_UPDATE=always` and read the diff).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use bindwave_tests::{bin, free_port, wait_until, Controller, Phone, Proc};

const TABLE: &[(&str, u16)] = &[("S30817-S7702-A101", 3), ("S30817-S7701-A101", 2)];

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn phones(dir: &Path, c: &Controller) -> Vec<Proc> {
    let a = Phone {
        id: "phone-a",
        part_number: "S30817-S7702-A101",
        software_version: "V3 R3.0.0",
        minimum_software_version: "V3 R1.0.0",
    };
    let b = Phone { id: "phone-b", part_number: "S30817-S7701-A101", ..a };
    let procs = vec![a.start(dir, &c.mqtt, TABLE), b.start(dir, &c.mqtt, TABLE)];
    wait_until(Duration::from_secs(30), "both phones online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
            == 2
    });
    procs
}

/// Times, ports, temporary paths: what changes from run to run, replaced so snapshots compare the rest.
fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?", "[time]");
    s.add_filter(r"\d{4}-\d\d-\d\d \d\d:\d\dZ", "[minute]");
    s.add_filter(r"127\.0\.0\.1:\d+", "[addr]");
    s.add_filter(r"/tmp/\.tmp\w+", "[dir]");
    s.add_filter(
        r#""(at|created_at|started_at|ended_at|passed_at|sent_at|updated_at|last_seen|added_at|deadline|from|starts|ends|now)": \d+"#,
        r#""$1": "[ms]""#,
    );
    s.add_filter(
        r"(?m)^(\s*(at|created_at|started_at|ended_at|passed_at|sent_at|updated_at|last_seen|added_at|deadline|from|starts|ends|now)): \d+$",
        "$1: [ms]",
    );
    s
}

#[test]
fn each_documented_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start(d);

    // 0: it worked.
    assert_eq!(code(&c.cli(&["rollout", "list"])), Some(0));
    // 1: something failed: a file that is not a bind.
    std::fs::write(d.join("junk.bind"), b"not a bind").unwrap();
    let o = c.cli(&["image", "add", d.join("junk.bind").to_str().unwrap()]);
    assert_eq!(code(&o), Some(1), "{}", text(&o));
    // 2: a wrong flag, and an invalid config file.
    let o = c.cli(&["rollout", "list", "--colour"]);
    assert_eq!(code(&o), Some(2), "{}", text(&o));
    std::fs::write(d.join("bad.toml"), "http_listen = \"nowhere\"\n").unwrap();
    let o = Command::new(bin("bindwave"))
        .args(["serve", "--config", d.join("bad.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(2), "{}", text(&o));
    assert!(text(&o).contains("http_listen"), "{}", text(&o));
    // 3: the controller is not reachable.
    let o = Command::new(bin("bindwave"))
        .args(["--controller", &format!("http://127.0.0.1:{}", free_port()), "rollout", "list"])
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(3), "{}", text(&o));
    // 4: no such rollout, image, device.
    let o = c.cli(&["rollout", "status", "r42"]);
    assert_eq!(code(&o), Some(4), "{}", text(&o));
    assert!(text(&o).contains("no rollout r42") && text(&o).contains("bindwave rollout list"), "{}", text(&o));
    let o = c.cli(&["rollout", "create", "--image", "abcdef123456", "--all"]);
    assert_eq!(code(&o), Some(4), "{}", text(&o));
    // 5: refused in the rollout's state: a rollout not started cannot be resumed.
    let _phones = phones(d, &c);
    let sha = c.pack_and_add(d, "fw", "V3 R3.18.0", Some("3"));
    let r = c.ok(&["rollout", "create", "--image", &sha, "--all"]);
    let o = c.cli(&["rollout", "resume", &r]);
    assert_eq!(code(&o), Some(5), "{}", text(&o));
    assert!(text(&o).contains("cannot resume"), "{}", text(&o));
}

#[test]
fn snapshots_of_tables_json_and_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start(d);
    let _phones = phones(d, &c);
    let sha = c.pack_and_add(d, "fw", "V3 R3.18.0", Some("3"));
    let bind = d.join("fw.bind");
    let bind = bind.to_str().unwrap();
    let _guard = settings().bind_to_scope();

    insta::assert_snapshot!("image_inspect_table", c.ok(&["image", "inspect", bind]));
    insta::assert_snapshot!("image_inspect_json", c.ok(&["image", "inspect", bind, "-o", "json"]));
    insta::assert_snapshot!("image_inspect_yaml", c.ok(&["image", "inspect", bind, "-o", "yaml"]));
    insta::assert_snapshot!("image_list_table", c.ok(&["image", "list"]));
    insta::assert_snapshot!("device_list_table", c.ok(&["device", "list"]));
    // A filter the controller applies, and the fleet counted.
    let only_b: serde_json::Value =
        serde_json::from_str(&c.ok(&["device", "list", "--filter", "PHONE-B online", "-o", "json"])).unwrap();
    assert_eq!(
        only_b.as_array().map(|a| a.iter().map(|d| d["id"].clone()).collect::<Vec<_>>()),
        Some(vec!["phone-b".into()])
    );
    assert_eq!(c.ok(&["device", "list", "--filter", "offline", "-o", "json"]), "[]");
    let (code, page) = c.get("/api/v1/devices?limit=1&after=phone-a");
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&page).unwrap()[0]["id"], "phone-b", "{page}");
    let (_, summary) = c.get("/api/v1/fleet/summary?filter=phone-b");
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        (summary["devices"].as_u64(), summary["online"].as_u64(), summary["matching"].as_u64()),
        (Some(2), Some(2), Some(1)),
        "{summary}"
    );

    let plan = ["rollout", "plan", "--image", &sha, "--all", "--waves", "1,all", "--seed", "7"];
    insta::assert_snapshot!("rollout_plan_table", c.ok(&plan));
    let mut plan_json = plan.to_vec();
    plan_json.extend(["-o", "json"]);
    insta::assert_snapshot!("rollout_plan_json", c.ok(&plan_json));

    let r = c.ok(&["rollout", "create", "--image", &sha, "--all", "--waves", "1,all", "--seed", "7", "--start"]);
    let out = c.ok(&["rollout", "status", &r, "--wait"]);
    insta::assert_snapshot!("rollout_status_table", out);
    insta::assert_snapshot!("rollout_list_table", c.ok(&["rollout", "list"]));
    insta::assert_snapshot!("rollout_status_yaml", c.ok(&["rollout", "status", &r, "-o", "yaml"]));
    // One device across its rollouts: the rejected one says why, in words with its values.
    insta::assert_snapshot!("device_show_table", c.ok(&["device", "show", "phone-b"]));
    let shown: serde_json::Value = serde_json::from_str(&c.ok(&["device", "show", "phone-b", "-o", "json"])).unwrap();
    assert_eq!(shown["jobs"][0]["phase"]["reason"]["code"], "hardware_level_incompatible", "{shown}");
    assert!(shown["jobs"][0]["reason_text"].as_str().unwrap().contains("hardware level 2 is not among"), "{shown}");
    let o = c.cli(&["device", "show", "phone-zz"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("phone-zz"));

    // What `status --wait` and `watch` poll: the same status without every device's job.
    let (code, full) = c.get(&format!("/api/v1/rollouts/{r}"));
    assert_eq!(code, 200, "{full}");
    let (code, counts) = c.get(&format!("/api/v1/rollouts/{r}?jobs=false"));
    assert_eq!(code, 200, "{counts}");
    let full: serde_json::Value = serde_json::from_str(&full).unwrap();
    let counts: serde_json::Value = serde_json::from_str(&counts).unwrap();
    assert_eq!(full["jobs"].as_array().map(Vec::len), Some(2), "{full}");
    assert_eq!(counts["jobs"], serde_json::json!([]), "{counts}");
    assert_eq!(counts["counts"], full["counts"]);
    assert_eq!(counts["waves"], full["waves"]);
    let (code, bad) = c.get(&format!("/api/v1/rollouts/{r}?jobs=maybe"));
    assert_eq!(code, 400, "{bad}");

    // Jobs come in pages, in plan order: each page names the `after` of the next, the last names none.
    let page = |query: &str| {
        let (code, body) = c.get(&format!("/api/v1/rollouts/{r}?{query}"));
        assert_eq!(code, 200, "{query}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let first = page("limit=1");
    assert_eq!(first["jobs"].as_array().map(Vec::len), Some(1), "{first}");
    assert_eq!(first["jobs"][0], full["jobs"][0]);
    let after = first["next"].as_u64().expect("a next page");
    let second = page(&format!("limit=1&after={after}"));
    assert_eq!(second["jobs"][0], full["jobs"][1]);
    assert!(second.get("next").is_none(), "{second}");
    assert!(full.get("next").is_none(), "{full}");
    for limit in ["0", "10001"] {
        let (code, bad) = c.get(&format!("/api/v1/rollouts/{r}?limit={limit}"));
        assert_eq!(code, 400, "{bad}");
        assert!(bad.contains("1 to 10000 jobs"), "{bad}");
    }
}

/// `--log-format json`: one JSON object per line, and a device's job logs inside a `job` span that names the
/// rollout, the job and the device, so a log shipper can follow one phone.
#[test]
fn json_logs_follow_one_phone_through_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start_args(d, &["--log-format", "json", "--log-level", "info"]);
    let _phones = phones(d, &c);
    let sha = c.pack_and_add(d, "fw", "V3 R3.18.0", Some("3"));
    let r = c.ok(&["rollout", "create", "--image", &sha, "--all", "--start"]);
    c.ok(&["rollout", "status", &r, "--wait"]);
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(10), "the job outcomes in the log", || {
        lines = c.proc.log_text().lines().map(str::to_string).collect();
        lines.iter().filter(|l| l.contains("job finished")).count() == 2
    });
    let mut seen = Vec::new();
    for line in lines.iter().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"].as_str().is_some_and(|m| m.starts_with("job finished")) {
            assert_eq!(v["span"]["name"], "job", "{line}");
            assert_eq!(v["span"]["rollout"], r.as_str(), "{line}");
            let outcome = v["fields"]["outcome"].as_str().unwrap_or_default().to_string();
            seen.push((v["span"]["device"].as_str().unwrap().to_string(), outcome));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("phone-a".to_string(), "succeeded".to_string()),
            ("phone-b".to_string(), "rejected_hardware".to_string())
        ]
    );
    // The operator's action is logged in the rollout's span.
    assert!(lines.iter().any(|l| l.contains("\"name\":\"rollout\"") && l.contains("start")), "{lines:#?}");
}
