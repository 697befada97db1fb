//! The config's unit tests: reading, checking, overrides, reports.

use std::path::Path;

use bindwave_proto::wire::{LevelConflict, LevelSource};
use bindwave_proto::HardwareLevel;
use bindwave_settings::{line_column, Spans};

use super::*;

fn parse(extra: &str) -> Result<AgentConfig, toml::de::Error> {
    toml::from_str(&format!(
        r#"
        device_id = "phone-1"
        part_number = "P1"
        software_version = "V3 R3.0.0"
        minimum_software_version = "V3 R1.0.0"
        state_dir = "/tmp/x"
        {extra}
        [broker]
        url = "mqtt://127.0.0.1:1883"
        "#
    ))
}

#[test]
fn level_from_the_part_number_table_or_a_fixed_value() {
    let c = parse("[hardware_levels]\nP1 = 4\n").unwrap();
    assert_eq!(
        c.identity().unwrap(),
        Identity { hardware_level: HardwareLevel(4), source: LevelSource::PartNumber, conflict: None }
    );
    let c = parse("hardware_level = 2").unwrap();
    assert_eq!(
        c.identity().unwrap(),
        Identity { hardware_level: HardwareLevel(2), source: LevelSource::Configured, conflict: None }
    );
}

#[test]
fn the_probe_wins_and_a_disagreement_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("level");
    std::fs::write(&file, "5\n").unwrap();
    let c = parse(&format!("[hardware_levels]\nP1 = 4\n[hardware_probe]\nfile = {:?}\n", file.display().to_string()))
        .unwrap();
    let id = c.identity().unwrap();
    assert_eq!((id.hardware_level, id.source), (HardwareLevel(5), LevelSource::Probe));
    assert_eq!(
        id.conflict,
        Some(LevelConflict { probe: HardwareLevel(5), other: HardwareLevel(4), other_source: LevelSource::PartNumber })
    );
    // Agreeing sources: no conflict.
    std::fs::write(&file, "4").unwrap();
    assert_eq!(c.identity().unwrap().conflict, None);
    // A command works the same way.
    let c = parse("[hardware_probe]\ncommand = [\"echo\", \"7\"]\n").unwrap();
    assert_eq!(c.identity().unwrap().hardware_level, HardwareLevel(7));
    // A probe that says nonsense is a clear error.
    std::fs::write(&file, "level three").unwrap();
    let c = parse(&format!("[hardware_probe]\nfile = {:?}\n", file.display().to_string())).unwrap();
    assert!(c.identity().unwrap_err().to_string().contains("not a hardware level"));
    let c = parse("[hardware_probe]\ncommand = [\"false\"]\n").unwrap();
    assert!(c.identity().unwrap_err().to_string().contains("exited"));
}

#[test]
fn the_minimum_can_depend_on_the_hardware_level() {
    let c = parse("[minimum_software_versions]\n\"3\" = \"V3 R2.0.0\"\n").unwrap();
    assert_eq!(c.minimum_for(HardwareLevel(3)).to_string(), "V3 R2.0.0");
    assert_eq!(c.minimum_for(HardwareLevel(4)).to_string(), "V3 R1.0.0");
}

#[test]
fn default_access_settings_make_a_url_from_a_file_name() {
    let a = AccessSettings {
        protocol: "HTTPS".into(),
        server: "files.example".into(),
        port: Some(8443),
        user: None,
        password: None,
        path: "/binds/".into(),
    };
    assert_eq!(a.url_for("fw.bind").unwrap(), "https://files.example:8443/binds/fw.bind");
    for bad in ["", "../etc/passwd", "a/b.bind", ".."] {
        assert!(a.url_for(bad).is_err(), "{bad}");
    }
    let ftp = AccessSettings { protocol: "ftp".into(), port: None, ..a.clone() };
    assert_eq!(ftp.url_for("fw.bind").unwrap(), "ftp://files.example/binds/fw.bind");
    let ftps = AccessSettings { protocol: "FTPS".into(), port: Some(990), ..a.clone() };
    assert_eq!(ftps.url_for("fw.bind").unwrap(), "ftps://files.example:990/binds/fw.bind");
    let sftp = AccessSettings { protocol: "sftp".into(), ..a };
    assert!(sftp.url_for("fw.bind").unwrap_err().contains("not supported"));
}

#[test]
fn unknown_part_number_is_a_clear_error() {
    let c = parse("").unwrap();
    let e = c.identity().unwrap_err().to_string();
    assert!(e.contains("P1") && e.contains("[hardware_levels]"), "{e}");
}

#[test]
fn typos_and_bad_versions_are_refused() {
    assert!(parse("hardware_levle = 2").unwrap_err().to_string().contains("hardware_levle"));
    let e = toml::from_str::<AgentConfig>(
        "device_id='a'\npart_number='p'\nsoftware_version='latest'\nminimum_software_version='1'\nstate_dir='/'\n[broker]\nurl='mqtt://x'",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("latest"), "{e}");
}

#[test]
fn a_job_limit_is_the_shorter_of_the_agents_and_the_commands() {
    let d = DownloadSettings { timeout_secs: 600, ..DownloadSettings::default() };
    let mut cmd = bindwave_proto::wire::UpdateCommand {
        job_id: "j".into(),
        rollout_id: "r".into(),
        url: "http://x/fw.bind".into(),
        size: 1,
        sha256: "00".into(),
        override_compat: false,
        use_defaults: false,
        timeout_secs: None,
        install_windows: vec![],
    };
    assert_eq!(d.limit_for(&cmd).as_secs(), 600);
    cmd.timeout_secs = Some(60);
    assert_eq!(d.limit_for(&cmd).as_secs(), 60);
    cmd.timeout_secs = Some(7200);
    assert_eq!(d.limit_for(&cmd).as_secs(), 600);
    cmd.timeout_secs = Some(0);
    assert_eq!(d.limit_for(&cmd).as_secs(), 1);
}

const GOOD: &str = concat!(
    r#"device_id = "phone-1"
part_number = "P1"
software_version = "V3 R3.0.0"
minimum_software_version = "V3 R1.0.0"
state_dir = "/tmp/x"

[broker]
url = "mqtts://127.0.0.1:8883"
ca_file = ""#,
    env!("CARGO_MANIFEST_DIR"),
    r#"/tests/fixtures/ca.pem"

[hardware_levels]
P1 = 3

[trust]
keys = ["ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"]
controller_keys = ["ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"]
"#
);

/// GOOD's `[broker]` section: TLS to the broker, verified against a test CA.
const BROKER: &str = concat!(
    "[broker]\nurl = \"mqtts://127.0.0.1:8883\"\nca_file = \"",
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ca.pem\"\n"
);

/// GOOD without its `[trust]` section.
fn untrusting() -> String {
    GOOD.split("[trust]").next().unwrap().to_string()
}

/// The release key line of GOOD.
const RELEASE: &str = "keys = [\"ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c\"]\n";

#[test]
fn without_a_pinned_controller_key_the_config_names_the_key_to_set_unless_a_lab_asks() {
    let bare = format!("{}[trust]\n{RELEASE}", untrusting());
    let m = messages(&check_with(&bare, &[]));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains("`controller_keys` in [trust]") && m[0].contains("controller_key_files"), "{m:?}");
    assert!(check_with(&format!("{bare}insecure_lab = true\n"), &[]).is_valid());
    let m = messages(&check_with(&format!("{bare}controller_keys = [\"ed25519:00\"]\n"), &[]));
    assert!(m.iter().any(|m| m.contains("entry 1") && m.contains("64 hex digits")), "{m:?}");
    let m = messages(&check_with(&format!("{bare}controller_key_files = [\"/nonexistent/c.pub\"]\n"), &[]));
    assert!(m.iter().any(|m| m.contains("/nonexistent/c.pub")), "{m:?}");
    // A key file that holds a key is pinned, as the inline key is.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("controller.key.pub");
    std::fs::write(&file, "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c\n").unwrap();
    let c = check_with(&format!("{bare}controller_key_files = [{:?}]\n", file.display().to_string()), &[]);
    assert!(c.is_valid(), "{:?}", messages(&c));
    let config = c.into_config().unwrap();
    assert_eq!(config.trust.controller().unwrap().keys().len(), 1);
}

fn check_with(text: &str, overrides: &[Override]) -> Check {
    check_text(Path::new("agent.toml"), text, overrides)
}

fn env(vars: &[(&str, &str)]) -> Vec<Override> {
    Override::from_env(vars.iter().map(|(k, v)| (k.into(), v.into())))
}

fn messages(c: &Check) -> Vec<String> {
    c.problems.iter().map(|p| p.to_string()).collect()
}

/// Every key of a fully populated config, as dotted paths (free-key sections as one key).
fn struct_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) if !matches!(k.as_str(), "hardware_levels" | "minimum_software_versions") => {
                struct_keys(t, &key, out)
            }
            _ => out.push(key),
        }
    }
}

#[test]
fn the_example_config_reads_and_has_every_key() {
    // The keys come from the structs' serde derive; the example must give each of them a value.
    let schema = schema().unwrap();
    assert_eq!(schema.unexampled(), Vec::<String>::new(), "keys without an example in agent.example.toml");
    let config: AgentConfig = toml::from_str(EXAMPLE).unwrap();
    let mut from_struct = Vec::new();
    struct_keys(&toml::Table::try_from(&config).unwrap(), "", &mut from_struct);
    let mut from_example = Vec::new();
    struct_keys(&toml::from_str(EXAMPLE).unwrap(), "", &mut from_example);
    from_struct.sort();
    from_example.sort();
    assert_eq!(from_struct, from_example, "agent.example.toml leaves out a key, or has one AgentConfig lacks");
    // The schema learnt from the derive knows the sections, their keys, and which sections take free keys.
    let download: Vec<String> = vec!["download".into()];
    assert_eq!(
        schema.fields(&download),
        Some(&["attempts", "backoff_ms", "max_backoff_secs", "ca_file", "timeout_secs"][..])
    );
    assert!(schema.is_map(&["hardware_levels".to_string()]));
    assert!(schema.root_leaves().contains(&"report_retry_secs".to_string()));
}

#[test]
fn durations_may_be_written_in_words() {
    let text = GOOD.replace(
        "[broker]",
        "report_retry_secs = \"30s\"\n[download]\ntimeout_secs = \"1h30m\"\nbackoff_ms = \"2s\"\n[broker]",
    );
    let c = check_with(&text, &[]);
    let config = c.config.as_ref().unwrap_or_else(|| panic!("{:?}", c.problems));
    assert_eq!((config.report_retry_secs, config.download.timeout_secs), (30, 5400));
    assert_eq!(config.download.backoff_ms, 2000);
    let m = messages(&check_with(&GOOD.replace("[broker]", "report_retry_secs = 0\n[broker]"), &[]));
    assert_eq!(
        m,
        ["line 7, column 1: `report_retry_secs` must be a whole number of seconds from 1 to 31536000 (a year), or a \
          duration such as \"30s\" or \"6h\", e.g. 10; found the number 0"]
    );
}

#[test]
fn a_missing_key_is_named_with_an_example_and_the_rest_still_checked() {
    let c = check_with(&GOOD.replace("state_dir = \"/tmp/x\"\n", "").replace("P1 = 3", "P1 = \"three\""), &[]);
    assert_eq!(
        messages(&c),
        [
            "line 11, column 1: `P1` in [hardware_levels] must be a whole number from 0 to 65535, e.g. 3; found the \
             string \"three\"",
            "missing key `state_dir`, e.g. state_dir = \"/var/lib/bindwave-agent\"",
        ]
    );
    let c = check_with(&GOOD.replace(BROKER, ""), &[]);
    assert_eq!(messages(&c), ["missing section [broker], with at least url = \"mqtts://bindwave.example:8883\""]);
}

#[test]
fn a_probe_that_hangs_is_stopped_at_its_time_limit() {
    let c = parse("[hardware_probe]\ncommand = [\"sleep\", \"5\"]\ntimeout_secs = 1\n").unwrap();
    let started = std::time::Instant::now();
    let e = c.identity().unwrap_err().to_string();
    assert!(e.contains("did not answer within 1s"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

#[test]
fn a_good_config_is_valid_and_resolves_its_identity() {
    assert!(GOOD.contains(BROKER));
    let c = check_with(GOOD, &[]);
    assert!(c.is_valid(), "{:?}", c.problems);
    assert_eq!(c.identity.as_ref().unwrap().hardware_level, HardwareLevel(3));
    assert!(c.text().contains("from the part number P1"), "{}", c.text());
    assert_eq!(serde_json::to_value(c.report()).unwrap()["hardware_level_source"], "part_number");
}

#[test]
fn a_typo_is_reported_with_its_place_and_the_key_meant() {
    let c = check_with(&GOOD.replace("[hardware_levels]", "[download]\natempts = 3\n\n[hardware_levels]"), &[]);
    assert_eq!(messages(&c), ["line 12, column 1: unknown key `atempts` in [download]; did you mean `attempts`?"]);
    assert_eq!(c.problems[0].suggestion.as_deref(), Some("attempts"));
    assert_eq!(c.problems[0].key.as_deref(), Some("download.atempts"));
    // A misspelled required key is one problem, not two (unknown + missing).
    let c = check_with(&GOOD.replace("state_dir", "statedir"), &[]);
    assert_eq!(messages(&c), ["line 5, column 1: unknown key `statedir`; did you mean `state_dir`?"]);
    // A top-level key written after a section header.
    let c = check_with(&GOOD.replace("[hardware_levels]", "[download]\nreport_retry_secs = 5\n[hardware_levels]"), &[]);
    assert!(messages(&c)[0].contains("it belongs at the top level"), "{:?}", messages(&c));
    let c = check_with(&GOOD.replace("P1 = 3\n", "P1 = 3\nreport_retry_secs = 5\n"), &[]);
    assert!(messages(&c)[0].contains("is a top-level key: move it before the first [section]"), "{:?}", messages(&c));
    let c = check_with(&GOOD.replace("[broker]", "attempts = 3\n[broker]"), &[]);
    assert!(messages(&c)[0].ends_with("unknown key `attempts`; it belongs in [download]"), "{:?}", messages(&c));
}

#[test]
fn a_syntax_error_has_its_line_and_column() {
    let c = check_with(&GOOD.replace("P1 = 3", "P1 = = 3"), &[]);
    assert_eq!(c.problems.len(), 1);
    assert_eq!(c.problems[0].origin, Origin::File { line: Some(12), column: Some(6) });
    assert!(c.problems[0].message.starts_with("TOML syntax error: "), "{}", c.problems[0].message);
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = GOOD
        .replace("mqtts://127.0.0.1:8883", "http://broker")
        .replace("P1 = 3", "P2 = 3")
        .replace("[broker]", "labels = \"pilot\"\n[download]\nattempts = 0\n[installer]\ncommand = []\n[broker]");
    let c = check_with(&text, &[]);
    let m = messages(&c);
    assert_eq!(m.len(), 5, "{m:#?}");
    assert!(m.iter().any(|p| p.contains("`labels` must be a list of strings") && p.contains("[\"pilot\"]")));
    assert!(m.iter().any(|p| p.contains("`attempts` in [download] must be a whole number from 1")));
    assert!(m.iter().any(|p| p.contains("`command` in [installer] is empty")));
    assert!(m.iter().any(|p| p.contains("invalid broker url \"http://broker\"")));
    assert!(m.iter().any(|p| p.contains("no hardware level for part number \"P1\"")));
    // In the file's order.
    let lines: Vec<usize> = c
        .problems
        .iter()
        .filter_map(|p| match p.origin {
            Origin::File { line, .. } => line,
            _ => None,
        })
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    let e = check_with(&text, &[]).into_config().unwrap_err().to_string();
    assert!(e.starts_with("agent config agent.toml is invalid: 5 problems:\n  line "), "{e}");
}

#[test]
fn flags_win_over_the_environment_and_the_environment_over_the_file() {
    let mut o = env(&[
        ("bindwave_agent__Download__Attempts", "4"),
        ("BINDWAVE_AGENT__DEVICE_ID", "phone-9"),
        ("BINDWAVE_AGENT__BROKER__URL", "mqtts://env:8883"),
        ("BINDWAVE_AGENT_CONFIG", "/not/an/override.toml"),
        ("OTHER", "x"),
    ]);
    assert_eq!(o.len(), 3);
    o.push(Override::parse_set("broker.url=mqtts://flag:8883").unwrap());
    o.push(Override::parse_set("hardware_levels.\"P1\"=5").unwrap());
    let c = check_with(GOOD, &o);
    let config = c.config.as_ref().unwrap_or_else(|| panic!("{:?}", c.problems));
    assert_eq!(config.download.attempts, 4);
    assert_eq!(config.device_id.as_str(), "phone-9");
    assert_eq!(config.broker.url, "mqtts://flag:8883");
    assert_eq!(c.identity.as_ref().unwrap().hardware_level, HardwareLevel(5));
    let keys: Vec<&str> = c.overrides.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["broker.url", "device_id", "download.attempts", "broker.url", "hardware_levels.P1"]);
}

#[test]
fn values_are_toml_or_else_text_and_text_where_a_key_takes_text() {
    let set = |a: &str| Override::parse_set(a).unwrap();
    assert_eq!(set("download.attempts=3").value, toml::Value::Integer(3));
    assert_eq!(set("device_id=phone-9").value, toml::Value::String("phone-9".into()));
    assert_eq!(set("labels=[\"a\", \"b\"]").value.as_array().map(Vec::len), Some(2));
    assert_eq!(set("model=").value, toml::Value::String(String::new()));
    assert_eq!(set("hardware_levels.\"S30817-S7702-A101\"=3").path, ["hardware_levels", "S30817-S7702-A101"]);
    assert_eq!(set("a.'b=c'=1").path, ["a", "b=c"]);
    assert!(Override::parse_set("attempts").unwrap_err().contains("KEY=VALUE"));
    assert!(Override::parse_set("a..b=1").unwrap_err().contains("not a config key"));
    // `inf` is a TOML float, `123` an integer: where the key takes a string, they are that text.
    let c = check_with(GOOD, &[set("model=inf"), set("device_id=123"), set("software_version=V3 R4.0.0")]);
    let config = c.config.as_ref().unwrap_or_else(|| panic!("{:?}", c.problems));
    assert_eq!((config.model.as_deref(), config.device_id.as_str()), (Some("inf"), "123"));
    assert_eq!(config.software_version.to_string(), "V3 R4.0.0");
}

#[test]
fn a_bad_override_is_reported_with_the_variable_or_flag_it_came_from() {
    let mut o = env(&[("BINDWAVE_AGENT__DOWNLOAD__ATEMPTS", "3"), ("BINDWAVE_AGENT__BROKER____URL", "x")]);
    o.push(Override::flag("--broker", &["broker", "url"], "http://x"));
    o.push(Override::parse_set("device_id.x=1").unwrap());
    let m = messages(&check_with(GOOD, &o));
    assert_eq!(
        m,
        [
            "BINDWAVE_AGENT__BROKER____URL: a part of the key is empty: separate the parts with two \
             underscores, e.g. BINDWAVE_AGENT__DOWNLOAD__ATTEMPTS",
            "BINDWAVE_AGENT__DOWNLOAD__ATEMPTS: unknown key `atempts` in [download]; did you mean `attempts`?",
            "--set device_id.x=1: cannot set device_id.x: device_id is the string \"phone-1\", not a section",
            "--broker: invalid broker url \"http://x\": only mqtt:// and mqtts:// are supported (expected mqtt://host:port or \
             mqtts://host:port)",
        ]
    );
}

#[test]
fn keys_are_found_in_dotted_keys_and_inline_tables() {
    let text = "device_id = \"a\"\ndownload.atempts = 1\nbroker = { url = \"mqtt://x\", user = \"u\" }\n";
    let spans: Spans = toml::from_str(text).unwrap();
    let at = |p: &[&str]| {
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        spans.find(&p).map(|o| line_column(text, o))
    };
    assert_eq!(at(&["download", "atempts"]), Some((2, 10)));
    assert_eq!(at(&["broker", "user"]), Some((3, 30)));
    assert_eq!(at(&["broker", "nothing"]), Some((3, 1)));
    assert_eq!(at(&["nothing"]), None);
}

#[test]
fn the_nearest_key_is_a_few_edits_away() {
    let schema = schema().unwrap();
    let root = schema.fields(&[]).unwrap();
    assert_eq!(nearest("hardware_levle", root.iter().copied()), Some("hardware_level"));
    let download = schema.fields(&["download".to_string()]).unwrap();
    assert_eq!(nearest("atempts", download.iter().copied()), Some("attempts"));
    assert_eq!(nearest("Ca-File", download.iter().copied()), Some("ca_file"));
    assert_eq!(nearest("colour", download.iter().copied()), None);
}

#[test]
fn a_password_needs_a_username_and_a_username_may_go_alone() {
    let m = messages(&check_with(GOOD, &[Override::parse_set("broker.password=hunter2").unwrap()]));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains("`password` in [broker] is set without a `username`"), "{m:?}");
    assert!(!m[0].contains("hunter2"), "{m:?}");
    assert!(check_with(GOOD, &[Override::parse_set("broker.username=phone").unwrap()]).is_valid());
}

#[test]
fn secrets_are_hidden_when_shown() {
    let login = [
        Override::parse_set("broker.username=phone").unwrap(),
        Override::parse_set("broker.password=hunter2").unwrap(),
    ];
    let c = check_with(GOOD, &login);
    assert!(!c.text().contains("hunter2") && c.text().contains("broker.password=********"), "{}", c.text());
    assert!(!serde_json::to_string(&c.report()).unwrap().contains("hunter2"));
    let config = c.config.unwrap();
    assert_eq!(config.effective(false).broker.password.as_deref(), Some("********"));
    assert_eq!(config.effective(true).broker.password.as_deref(), Some("hunter2"));
    let m = messages(&check_with(&GOOD.replace("[broker]", "[broker]\npassword = 1234"), &[]));
    assert_eq!(
        m,
        ["line 8, column 1: `password` in [broker] must be a string, e.g. \"secret\"; found a value of type integer"]
    );
}

#[test]
fn a_phone_without_a_release_key_is_refused_unless_it_is_a_lab_phone() {
    let bare = GOOD.replace(&format!("\n{RELEASE}"), "\n");
    let m = messages(&check_with(&bare, &[]));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains("no release key") && m[0].contains("`keys` in [trust]"), "{m:?}");
    assert!(check_with(&bare, &[]).into_config().unwrap_err().to_string().contains("insecure_lab = true"));
    let key = "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    let c = check_with(GOOD, &[]);
    assert!(c.is_valid(), "{:?}", c.problems);
    let config = c.config.as_ref().unwrap();
    let release = config.trust.release().unwrap();
    assert_eq!(release.keys().keys(), &[key.parse().unwrap()]);
    assert!(!release.insecure_lab());
    assert!(c.text().contains("release keys    "), "{}", c.text());
    // The lab phone says so in its summary.
    let lab = check_with(&format!("{}insecure_lab = true\n", bare), &[]);
    assert!(lab.text().contains("LAB MODE"), "{}", lab.text());
}

#[test]
fn a_bad_key_is_explained_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("release.key");
    std::fs::write(&private, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n")
        .unwrap();
    let junk = dir.path().join("junk.pub");
    std::fs::write(&junk, "hello\n").unwrap();
    let missing = dir.path().join("missing.pub");
    let text = format!(
        "{}[trust]\nkeys = [\"ed25519:zz\"]\nkey_files = [{:?}, {:?}, {:?}]\ncontroller_keys = [\"rsa:1\"]\n",
        untrusting(),
        private.display().to_string(),
        junk.display().to_string(),
        missing.display().to_string()
    );
    let m = messages(&check_with(&text, &[]));
    assert_eq!(m.len(), 5, "{m:#?}");
    assert!(m.iter().any(|p| p.starts_with("line 15") && p.contains("`keys` in [trust], entry 1")), "{m:#?}");
    assert!(m.iter().any(|p| p.contains("is a private key: pin its public half")), "{m:#?}");
    assert!(m.iter().any(|p| p.contains("junk.pub is not a public key")), "{m:#?}");
    assert!(m.iter().any(|p| p.contains("cannot read") && p.contains("missing.pub")), "{m:#?}");
    assert!(m.iter().any(|p| p.contains("`controller_keys` in [trust], entry 1")), "{m:#?}");
    // The same from the agent's start, for a config that was never checked.
    let config = check_with(GOOD, &[]).config.unwrap();
    let mut unchecked = config.clone();
    unchecked.trust.key_files = vec![missing];
    assert!(unchecked.trust.release().unwrap_err().to_string().contains("missing.pub"));
}

#[test]
fn tls_to_the_broker_needs_mqtts_a_ca_and_a_whole_client_certificate() {
    let with = |broker: &str| GOOD.replace(BROKER, broker);
    let c = check_with(&with("[broker]\nurl = \"mqtts://127.0.0.1:8883\"\n"), &[]);
    let m = messages(&c);
    assert!(m.iter().any(|m| m.contains("mqtts:// but no `ca_file`")), "{m:?}");
    let c = check_with(&with("[broker]\nurl = \"mqtt://127.0.0.1:1883\"\nca_file = \"/x/ca.pem\"\n"), &[]);
    let m = messages(&c);
    assert!(m.iter().any(|m| m.contains("plain mqtt://: use mqtts://")), "{m:?}");
    // Plain MQTT sends the broker password in clear: a lab phone's choice only.
    let plain = with("[broker]\nurl = \"mqtt://127.0.0.1:1883\"\n");
    let m = messages(&check_with(&plain, &[]));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains("plain mqtt:// sends the broker password") && m[0].contains("insecure_lab = true"), "{m:?}");
    assert!(check_with(&format!("{plain}insecure_lab = true\n"), &[]).is_valid());
    let c = check_with(
        &with("[broker]\nurl = \"mqtts://127.0.0.1:8883\"\nca_file = \"/x/ca.pem\"\nclient_cert = \"/x/a.pem\"\n"),
        &[],
    );
    let m = messages(&c);
    assert!(m.iter().any(|m| m.contains("`client_cert` and `client_key` in [broker] go together")), "{m:?}");
}

#[test]
fn fallback_brokers_are_checked_as_the_broker_is() {
    let with = |broker: &str| GOOD.replace(BROKER, broker);
    let good =
        check_with(&GOOD.replace(BROKER, &format!("{BROKER}fallback_urls = [\"mqtts://127.0.0.1:8884\"]\n")), &[]);
    assert_eq!(messages(&good), Vec::<String>::new());
    assert_eq!(good.config.unwrap().broker.fallback_urls, ["mqtts://127.0.0.1:8884"]);
    let c = check_with(
        &with("[broker]\nurl = \"mqtt://127.0.0.1:1883\"\nfallback_urls = [\"http://b:1\", \"mqtts://c:8883\", \"mqtt://d:1883\"]\n"),
        &[],
    );
    let m = messages(&c);
    assert!(m.iter().any(|m| m.contains("invalid broker url \"http://b:1\"")), "{m:#?}");
    assert!(
        m.iter()
            .any(|m| m.contains("`fallback_urls` entry \"mqtts://c:8883\" in [broker] is mqtts:// but no `ca_file`")),
        "{m:#?}"
    );
    assert_eq!(m.iter().filter(|m| m.contains("plain mqtt:// sends the broker password")).count(), 2, "{m:#?}");
}
