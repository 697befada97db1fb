//! The agent's command line, run as the real binary: `config check` and `config show`, overrides from the
//! environment and flags, JSON logs with the job span, and the help of every command.
//!
//! Like every test here, it runs the built `bindwave-agent` (`cargo test --workspace` builds it; with
//! `-p bindwave-tests` alone, build it first: `cargo build -p bindwave-agent`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bindwave_tests::{bin, free_port, run, send_update, wait_until, Mosquitto, Proc};
use serde_json::Value;

const GOOD: &str = r#"device_id = "phone-1"
part_number = "P1"
software_version = "V3 R3.0.0"
minimum_software_version = "V3 R1.0.0"
state_dir = "/tmp/bindwave-agent-cli-never-used"

[broker]
url = "mqtt://127.0.0.1:1883"

[hardware_levels]
P1 = 3

[trust]
controller_keys = ["ed25519:2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12"]
insecure_lab = true
"#;

/// Writes `text` as `agent.toml` in `dir`.
fn config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `bindwave-agent ARGS`, with `env` set and no `BINDWAVE_AGENT*` variable from the test's own environment.
fn agent_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("bindwave-agent"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().to_ascii_uppercase().starts_with("BINDWAVE_AGENT") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG").args(args).envs(env.iter().copied());
    run(&mut cmd)
}

fn agent(args: &[&str]) -> Output {
    agent_with_env(args, &[])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["config", "check", "--config", path.to_str().unwrap()];
    args.extend(extra);
    agent(&args)
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON on stdout ({e}):\n{}", stdout(o)))
}

fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o));
}

#[test]
fn config_check_accepts_a_good_config_and_summarises_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), GOOD);
    let o = check(&path, &[]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("is valid"), "{out}");
    assert!(out.contains("phone-1"), "{out}");
    assert!(out.contains("hardware level  3 (from the part number P1 in [hardware_levels])"), "{out}");
    assert!(out.contains("mqtt://127.0.0.1:1883"), "{out}");

    let o = check(&path, &["-o", "json"]);
    assert_exit(&o, 0);
    let j = json(&o);
    assert_eq!(j["valid"], true);
    assert_eq!(j["device_id"], "phone-1");
    assert_eq!(j["hardware_level"], 3);
    assert_eq!(j["hardware_level_source"], "part_number");
    assert_eq!(j["broker"], "mqtt://127.0.0.1:1883");
    assert_eq!(j["problems"], serde_json::json!([]));
}

#[test]
fn config_check_names_a_misspelled_key_and_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &GOOD.replace("[hardware_levels]", "[download]\natempts = 3\n\n[hardware_levels]"));
    let o = check(&path, &[]);
    assert_exit(&o, 2);
    let out = stdout(&o);
    assert!(out.contains("line 11, column 1: unknown key `atempts` in [download]; did you mean `attempts`?"), "{out}");

    let j = json(&check(&path, &["-o", "json"]));
    assert_eq!(j["valid"], false);
    let p = &j["problems"][0];
    assert_eq!((p["key"].as_str(), p["suggestion"].as_str()), (Some("download.atempts"), Some("attempts")));
    assert_eq!((p["from"].as_str(), p["line"].as_u64()), (Some("file"), Some(11)));
}

#[test]
fn config_check_gives_the_line_and_column_of_a_toml_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &GOOD.replace("P1 = 3", "P1 = = 3"));
    let o = check(&path, &[]);
    assert_exit(&o, 2);
    let out = stdout(&o);
    assert!(out.contains("line 11, column 6: TOML syntax error"), "{out}");
}

#[test]
fn config_check_reports_a_bad_broker_url_and_an_unknown_part_number_together() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD.replace("mqtt://127.0.0.1:1883", "http://broker.example").replace("P1 = 3", "P2 = 3");
    let path = config(dir.path(), &text);
    let o = check(&path, &["-o", "json"]);
    assert_exit(&o, 2);
    let j = json(&o);
    let problems = j["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{j:#}");
    assert_eq!(problems[0]["key"], "part_number");
    assert!(problems[0]["message"].as_str().unwrap().contains("no hardware level for part number \"P1\""));
    assert!(problems[0]["message"].as_str().unwrap().contains("add it to [hardware_levels]"));
    assert_eq!(problems[1]["key"], "broker.url");
    assert_eq!(problems[1]["line"], 8);
    assert!(problems[1]["message"].as_str().unwrap().contains("invalid broker url \"http://broker.example\""));

    // The same problems stop `run`, all of them in one message.
    let o = agent(&["run", "--config", path.to_str().unwrap()]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("2 problems") && err.contains("part number") && err.contains("broker url"), "{err}");
}

#[test]
fn environment_and_set_overrides_take_effect_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), GOOD);
    let p = path.to_str().unwrap();
    let env = [
        ("BINDWAVE_AGENT__DOWNLOAD__ATTEMPTS", "3"),
        ("bindwave_agent__download__backoff_ms", "50"),
        ("BINDWAVE_AGENT__DEVICE_ID", "phone-9"),
        ("BINDWAVE_AGENT__BROKER__USERNAME", "phone-9"),
        ("BINDWAVE_AGENT__BROKER__PASSWORD", "hunter2"),
    ];
    let flags = [
        "--set",
        "download.attempts=5",
        "--set",
        "labels=[\"site=munich\", \"pilot\"]",
        "--broker",
        "mqtt://10.0.0.5:1884",
        "--state-dir",
        "/tmp/phone-9",
    ];
    let mut args = vec!["config", "check", "--config", p, "-o", "json"];
    args.extend(flags);
    let o = agent_with_env(&args, &env);
    assert_exit(&o, 0);
    let j = json(&o);
    let e = &j["effective"];
    assert_eq!(e["download"]["attempts"], 5, "--set wins over the environment");
    assert_eq!(e["download"]["backoff_ms"], 50, "environment variables are read in any case");
    assert_eq!(e["device_id"], "phone-9");
    assert_eq!(j["device_id"], "phone-9");
    assert_eq!(e["labels"], serde_json::json!(["site=munich", "pilot"]));
    assert_eq!(j["broker"], "mqtt://10.0.0.5:1884");
    assert_eq!(e["state_dir"], "/tmp/phone-9");
    assert_eq!(e["broker"]["password"], "********");
    assert!(!stdout(&o).contains("hunter2"));
    let sources: Vec<(String, String)> = j["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["key"].as_str().unwrap().to_string(), o["from"].as_str().unwrap().to_string()))
        .collect();
    assert!(sources.contains(&("download.attempts".into(), "env".into())), "{sources:?}");
    assert!(sources.contains(&("download.attempts".into(), "flag".into())), "{sources:?}");
    assert!(sources.contains(&("broker.url".into(), "flag".into())), "{sources:?}");

    // The text report lists them too, each with where it came from.
    let mut args = vec!["config", "check", "--config", p];
    args.extend(flags);
    let out = stdout(&agent_with_env(&args, &env));
    assert!(out.contains("device id       phone-9"), "{out}");
    assert!(out.contains("download.attempts = 3 (BINDWAVE_AGENT__DOWNLOAD__ATTEMPTS)"), "{out}");
    assert!(out.contains("download.attempts = 5 (--set download.attempts=5)"), "{out}");
    assert!(out.contains("broker.url = \"mqtt://10.0.0.5:1884\" (--broker)"), "{out}");

    // `config show` prints the config the agent would run with, as TOML or JSON.
    let mut args = vec!["config", "show", "--config", p];
    args.extend(flags);
    let o = agent_with_env(&args, &env);
    assert_exit(&o, 0);
    let toml = stdout(&o);
    assert!(toml.contains("device_id = \"phone-9\"\n"), "{toml}");
    assert!(toml.contains("[download]\nattempts = 5\nbackoff_ms = 50\n"), "{toml}");
    assert!(toml.contains("password = \"********\""), "{toml}");
    args.extend(["-o", "json", "--show-secrets"]);
    let shown = json(&agent_with_env(&args, &env));
    assert_eq!(shown["download"]["attempts"], 5);
    assert_eq!(shown["broker"]["password"], "hunter2");
}

#[test]
fn a_bad_override_is_reported_with_the_variable_or_flag_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), GOOD);
    let o = agent_with_env(
        &["config", "check", "--config", path.to_str().unwrap(), "--broker", "tcp//broker"],
        &[("BINDWAVE_AGENT__DOWNLOAD__ATEMPTS", "3")],
    );
    assert_exit(&o, 2);
    let out = stdout(&o);
    assert!(
        out.contains(
            "BINDWAVE_AGENT__DOWNLOAD__ATEMPTS: unknown key `atempts` in [download]; did you mean `attempts`?"
        ),
        "{out}"
    );
    assert!(out.contains("--broker: invalid broker url \"tcp//broker\""), "{out}");

    // A --set without `=` is a usage error.
    let o = agent(&["config", "check", "--config", path.to_str().unwrap(), "--set", "download.attempts"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("write KEY=VALUE"), "{}", stderr(&o));
}

#[test]
fn a_config_that_cannot_be_read_is_an_error_not_an_invalid_config() {
    let o = agent(&["config", "check", "--config", "/nonexistent/agent.toml"]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("error: cannot read agent config /nonexistent/agent.toml"), "{}", stderr(&o));
}

#[test]
fn log_format_json_writes_json_lines_and_a_job_span_with_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    // An error before anything runs is a JSON line too.
    let bad = config(dir.path(), &GOOD.replace("P1 = 3", "P2 = 3"));
    let o = agent(&["--log-format", "json", "run", "--config", bad.to_str().unwrap()]);
    assert_exit(&o, 1);
    let line: Value =
        serde_json::from_str(stderr(&o).trim()).unwrap_or_else(|e| panic!("not one JSON line ({e}):\n{}", stderr(&o)));
    assert_eq!(line["level"], "ERROR");
    assert!(line["message"].as_str().unwrap().contains("no hardware level for part number"), "{line}");

    // A phone's job: every line about it carries the job span with the job, rollout and device.
    let broker = Mosquitto::start(dir.path());
    let state = dir.path().join("phone-1");
    let text = GOOD
        .replace("mqtt://127.0.0.1:1883", &broker.url)
        .replace("/tmp/bindwave-agent-cli-never-used", state.to_str().unwrap())
        .replace("[broker]", "[download]\nattempts = 2\nbackoff_ms = 50\nmax_backoff_secs = 1\n\n[broker]");
    let path = config(dir.path(), &text);
    let mut cmd = Command::new(bin("bindwave-agent"));
    cmd.args(["--log-format", "json", "run", "--config", path.to_str().unwrap()]);
    let agent = Proc::spawn("phone-1", cmd, dir.path());
    wait_until(Duration::from_secs(20), "the agent to connect", || {
        agent.log_text().contains("connected to the broker")
    });
    // Nothing listens there: the download is retried once, then the job fails.
    let url = format!("http://127.0.0.1:{}/fw.bind", free_port());
    send_update(&broker.url, "phone-1", "job-7", &url, 100, &"0".repeat(64));
    wait_until(Duration::from_secs(30), "the job to finish", || agent.log_text().contains("job finished"));
    let lines: Vec<Value> = agent
        .log_text()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string()), "{lines:#?}");
    let starting = lines.iter().find(|l| l["message"] == "starting").expect("a starting line");
    assert_eq!(starting["device"], "phone-1");
    let in_job: Vec<&Value> = lines.iter().filter(|l| l["span"]["name"] == "job").collect();
    assert!(!in_job.is_empty(), "no line in the job span: {lines:#?}");
    for l in in_job {
        assert_eq!(l["span"]["job_id"], "job-7", "{l}");
        assert_eq!(l["span"]["rollout_id"], "r0", "{l}");
        assert_eq!(l["span"]["device"], "phone-1", "{l}");
    }
}

#[test]
fn an_invalid_log_level_is_a_usage_error() {
    let o = agent(&["--log-level", "verbose", "config", "check", "--config", "/nonexistent/agent.toml"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("expected a level"), "{}", stderr(&o));
}

#[test]
fn every_command_has_examples_in_its_help() {
    for args in
        [&[][..], &["run"][..], &["status"][..], &["config"][..], &["config", "check"][..], &["config", "show"][..]]
    {
        let mut with_help = args.to_vec();
        with_help.push("--help");
        let o = agent(&with_help);
        assert_exit(&o, 0);
        let help = stdout(&o);
        assert!(
            help.contains("Examples:\n  bindwave-agent "),
            "`bindwave-agent {}` has no examples:\n{help}",
            args.join(" ")
        );
    }
    let check_help = stdout(&agent(&["config", "check", "--help"]));
    assert!(check_help.contains("Exit codes:") && check_help.contains("2  the config is invalid"), "{check_help}");
}
