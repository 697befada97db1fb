//! The operators' side of security, against the real `bindwave serve`: bearer tokens with roles, the audit
//! actor taken from the token, HTTPS verified against the controller's CA, and an HTTP server that half-sent
//! requests, too many connections and oversized uploads cannot exhaust.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bindwave_tests::{assert_success, bin, dev_tls, http_get, run, wait_until, Controller, Phone};
use serde_json::Value;

/// The CLI with an explicit token (or none), trusting the controller's CA, and never finding the admin token
/// by itself.
fn cli_as(c: &Controller, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("bindwave"));
    cmd.env("BINDWAVE_DATA_DIR", c.data_dir.join("nowhere"))
        .env("BINDWAVE_CA_FILE", c.data_dir.join("tls").join("ca.pem"))
        .env_remove("BINDWAVE_TOKEN")
        .env_remove("BINDWAVE_TOKEN_FILE")
        .arg("--controller")
        .arg(&c.http);
    if let Some(t) = token {
        cmd.arg("--token").arg(t);
    }
    run(cmd.args(args))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn refused(out: &Output, status: &str, words: &[&str]) {
    assert!(!out.status.success(), "it worked, but should have been refused with {status}");
    let e = stderr(out);
    assert!(e.contains(status) && words.iter().all(|w| e.contains(w)), "expected {status} and {words:?}:\n{e}");
}

fn pack(c: &Controller, dir: &Path, name: &str, payload_len: usize) -> String {
    let payload = dir.join(format!("{name}.img"));
    std::fs::write(&payload, (0..payload_len).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
    let bind = dir.join(format!("{name}.bind"));
    let (p, b) = (payload.to_string_lossy().into_owned(), bind.to_string_lossy().into_owned());
    c.ok(&["image", "pack", &p, "--version", "V3 R3.18.0", "-o", &b]);
    b
}

#[test]
fn tokens_and_roles_decide_who_may_do_what_and_the_audit_names_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start_secure(d, &[]);
    assert!(c.http.starts_with("https://"), "{}", c.http);

    // The first admin token: written once, owner only, its path logged and the token never.
    let admin_file = c.data_dir.join("admin.token");
    let admin = std::fs::read_to_string(&admin_file).unwrap().trim().to_string();
    assert!(admin.starts_with("bw_"), "{admin}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&admin_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let log = c.proc.log_text();
    assert!(log.contains(&admin_file.display().to_string()), "{log}");
    assert!(!log.contains(&admin), "the log shows the admin token");

    // No token, or a wrong one: 401, saying how to get one.
    refused(&cli_as(&c, None, &["device", "list"]), "401", &["--token", "admin.token"]);
    refused(&cli_as(&c, Some("bw_nope"), &["device", "list"]), "401", &["not valid"]);
    assert_eq!(c.curl(None, "GET", "/metrics", None).0, 401);
    assert_eq!(c.curl(None, "GET", "/healthz", None), (200, "ok\n".into()));

    // The admin makes tokens; each is printed once, and the list shows none of them.
    let token = |name: &str, role: &str| {
        let out = cli_as(&c, Some(&admin), &["token", "create", "--name", name, "--role", role]);
        assert_success(&out, &["token", "create", name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let viewer = token("vera", "viewer");
    let operator = token("olga", "operator");
    let listed = cli_as(&c, Some(&admin), &["token", "list", "-o", "json"]);
    assert_success(&listed, &["token", "list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    for secret in [&admin, &viewer, &operator] {
        assert!(!text.contains(&secret[3..]), "token list shows a token:\n{text}");
    }
    let names: Vec<String> = serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{}:{}", t["name"].as_str().unwrap(), t["role"].as_str().unwrap()))
        .collect();
    assert_eq!(names, ["admin:admin", "olga:operator", "vera:viewer"]);
    refused(&cli_as(&c, Some(&operator), &["token", "list"]), "403", &["olga", "admin"]);

    // A phone, so that a rollout has a target.
    let _phone = Phone {
        id: "phone-1",
        part_number: "S30817-S7702-A101",
        software_version: "V3 R3.11.0",
        minimum_software_version: "V3 R1.0.0",
    }
    .start_login(
        d,
        &c.mqtt,
        &c.phone_login("phone-1"),
        &[("S30817-S7702-A101", 3)],
        &format!("[download]\nca_file = {:?}\n", c.data_dir.join("tls").join("ca.pem").display().to_string()),
    );
    wait_until(Duration::from_secs(30), "the phone to say hello", || {
        let out = cli_as(&c, Some(&viewer), &["device", "list", "-o", "json"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("phone-1")
    });

    // A viewer reads, and may not upload or create a rollout; an operator may.
    let bind = pack(&c, d, "fw", 20_000);
    refused(&cli_as(&c, Some(&viewer), &["image", "add", &bind]), "403", &["vera", "viewer", "operator"]);
    let out = cli_as(&c, Some(&operator), &["image", "add", &bind]);
    assert_success(&out, &["image", "add"]);
    let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let create = ["rollout", "create", "--image", &image, "--devices", "phone-1"];
    refused(&cli_as(&c, Some(&viewer), &create), "403", &["operator"]);
    assert_success(&cli_as(&c, Some(&viewer), &["rollout", "plan", "--image", &image, "--all"]), &["plan"]);
    // The client claims to be someone else: the audit log names the token.
    let out = cli_as(&c, Some(&operator), &[&create[..], &["--actor", "mallory"]].concat());
    assert_success(&out, &create);
    let (status, body) = c.curl(
        Some(&operator),
        "POST",
        "/api/v1/rollouts/r1/abort",
        Some(r#"{"actor":"mallory","reason":"wrong image"}"#),
    );
    assert_eq!(status, 200, "{body}");

    // An override needs a reason: the CLI asks for one, the API refuses without, and the audit log keeps it.
    let out = cli_as(&c, Some(&operator), &[&create[..], &["--override"]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));
    let spec = format!(
        r#"{{"spec":{{"image":"{image}","targets":{{"devices":["phone-1"]}},"override":true}},"actor":"mallory"}}"#
    );
    let (status, body) = c.curl(Some(&operator), "POST", "/api/v1/rollouts", Some(&spec));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reason"), "{body}");
    let out = cli_as(&c, Some(&operator), &[&create[..], &["--override", "--reason", "lab phone 7, CHG-42"]].concat());
    assert_success(&out, &["--override"]);

    let out = cli_as(&c, Some(&viewer), &["audit", "-o", "json"]);
    assert_success(&out, &["audit"]);
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (s("actor"), s("action"), s("reason"))
        })
        .collect();
    assert!(entries.iter().all(|(actor, _, _)| actor == "olga"), "{entries:?}");
    assert!(entries.iter().any(|(_, action, reason)| action == "abort" && reason == "wrong image"), "{entries:?}");
    assert!(
        entries
            .iter()
            .any(|(_, action, reason)| action == "create" && reason.contains("override: lab phone 7, CHG-42")),
        "{entries:?}"
    );

    // Metrics for Prometheus need a token (a viewer's will do); bind downloads by phones need none.
    assert_eq!(c.curl(Some(&viewer), "GET", "/metrics", None).0, 200);
    assert_eq!(c.curl(None, "GET", &format!("/binds/{image}.bind"), None).0, 200);
    // Hostile input is refused, and counted: a path that climbs out of the images, an upload that is no bind.
    assert_eq!(c.curl(None, "GET", "/binds/..%2F..%2Fadmin.token", None).0, 404);
    assert_eq!(c.curl(Some(&operator), "POST", "/api/v1/images", Some("not a bind")).0, 400);
    let (_, metrics) = c.curl(Some(&viewer), "GET", "/metrics", None);
    for what in ["bad_path", "image_upload"] {
        let series = format!("bindwave_refused_total{{what=\"{what}\"}} ");
        let n: f64 =
            metrics.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0);
        assert!(n >= 1.0, "{what} was not counted:\n{metrics}");
    }

    // The phone downloads the bind over HTTPS, trusting the controller's CA, and installs it.
    assert_success(&cli_as(&c, Some(&operator), &["rollout", "start", "r2", "--reason", "go"]), &["rollout", "start"]);
    let mut status = Value::Null;
    wait_until(Duration::from_secs(60), "the rollout over HTTPS to finish", || {
        let out = cli_as(&c, Some(&viewer), &["rollout", "status", "r2", "-o", "json"]);
        status = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        status["rollout"]["state"] == "finished"
    });
    assert_eq!(status["jobs"][0]["phase"]["phase"], "succeeded", "{status:#}");

    // A revoked token stops working at once.
    assert_success(&cli_as(&c, Some(&admin), &["token", "revoke", "vera"]), &["token", "revoke"]);
    refused(&cli_as(&c, Some(&viewer), &["device", "list"]), "401", &["not valid"]);

    // On this host, the CLI finds the admin token and the CA in the data directory by itself.
    assert_success(&c.cli(&["token", "list"]), &["token", "list"]);
}

#[test]
fn the_cli_verifies_the_controller_against_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_secure(dir.path(), &["--http-header-timeout-secs", "1"]);
    let admin = std::fs::read_to_string(c.data_dir.join("admin.token")).unwrap();
    assert_success(&cli_as(&c, Some(admin.trim()), &["device", "list"]), &["device", "list"]);

    // Another CA: the CLI refuses the controller, and says what to do.
    let other = dir.path().join("other-ca");
    dev_tls(&other);
    let ca = other.join("ca.pem").to_string_lossy().into_owned();
    let out = cli_as(&c, Some(admin.trim()), &["--ca-file", &ca, "device", "list"]);
    refused(&out, "not trusted", &["--ca-file", "certificate"]);
    assert_ne!(out.status.code(), Some(0));

    // A client that opens a connection and never starts TLS is dropped after the handshake timeout.
    let mut idle = TcpStream::connect(c.http.trim_start_matches("https://")).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(5), "held for {:?}", started.elapsed());
}

/// A number from the metrics text: the sample with this name and labels.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in the metrics"))
}

#[test]
fn half_sent_requests_cannot_exhaust_the_server_or_keep_phones_off_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    // Plain HTTP (lab mode), so that half a request is easy to send; the limits are the same with TLS.
    let args = ["--insecure-lab", "--http-max-connections", "50", "--http-header-timeout-secs", "3"];
    let c = Controller::start_secure(dir.path(), &args);
    let log = c.proc.log_text();
    assert!(log.contains("HTTP connections capped") && log.contains("max_connections=50"), "{log}");
    let addr = c.http.trim_start_matches("http://").to_string();

    // A client that keeps its connection open after a request, and sends nothing more, is let go too.
    let mut kept = TcpStream::connect(&addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: bindwave\r\n\r\n").unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.ends_with(b"ok\n") {
        let n = kept.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let idle = Instant::now();
    assert!(matches!(kept.read(&mut buf), Ok(0) | Err(_)));
    assert!(idle.elapsed() < Duration::from_secs(6), "an idle keep-alive connection held for {:?}", idle.elapsed());

    // 200 clients each send half a request's headers, and then nothing.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&addr).ok()?;
            let _ = s.write_all(b"GET /api/v1/devices HTTP/1.1\r\nHost: bindwave\r\nX-Slow: ");
            Some(s)
        })
        .collect();
    assert!(slow.len() >= 150, "only {} connections opened", slow.len());

    // A phone still gets onto MQTT meanwhile.
    let (host, port) = c.mqtt.trim_start_matches("mqtt://").rsplit_once(':').unwrap();
    let mut o = rumqttc::MqttOptions::new("phone-while-flooded", host, port.parse().unwrap());
    o.set_keep_alive(Duration::from_secs(5));
    let (_client, mut conn) = rumqttc::Client::new(o, 10);
    let connack = conn.iter().take(5).find_map(|e| match e {
        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => Some(Ok(ack)),
        Err(e) => Some(Err(e.to_string())),
        _ => None,
    });
    assert!(matches!(connack, Some(Ok(_))), "the phone could not connect: {connack:?}");

    // Every slow client is disconnected: those over the cap at once, the others after the header timeout.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 512];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break true,
                Ok(_) => {} // hyper's 408, then the close
            }
        };
        assert!(closed);
    }
    assert!(started.elapsed() < Duration::from_secs(12), "slow clients held for {:?}", started.elapsed());

    // And the server answers normal requests again, and counted what it refused.
    let (status, metrics) = http_get(&c.http, "/metrics").unwrap();
    assert_eq!(status, 200);
    let refused = sample(&metrics, "bindwave_refused_total{what=\"http_connection_limit\"}");
    assert!(refused >= 100.0, "refused {refused} connections over the cap of 50");
    assert_eq!(http_get(&c.http, "/healthz").unwrap(), (200, "ok\n".into()));
}

#[test]
fn an_upload_over_the_limit_is_refused_and_an_interrupted_one_is_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = ["--insecure-lab", "--max-upload-size", "10000"];
    let mut c = Controller::start_secure(d, &args);

    let big = pack(&c, d, "big", 50_000);
    let out = c.cli(&["image", "add", &big]);
    refused(&out, "413", &["max_upload_size", "10000"]);

    // Streamed without a declared length, it is cut off at the limit, and leaves no file.
    let bytes = std::fs::read(&big).unwrap();
    let mut s = TcpStream::connect(c.http.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"POST /api/v1/images HTTP/1.1\r\nHost: bindwave\r\nTransfer-Encoding: chunked\r\n\r\n");
    for chunk in bytes.chunks(4096) {
        let _ =
            write!(s, "{:x}\r\n", chunk.len()).and_then(|()| s.write_all(chunk)).and_then(|()| s.write_all(b"\r\n"));
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("max_upload_size"), "{answer}");
    drop(s);
    let leftovers = std::fs::read_dir(c.data_dir.join("images")).unwrap().count();
    assert_eq!(leftovers, 0, "a refused upload left a file");

    // Half an upload, and then the controller dies.
    let small = std::fs::read(pack(&c, d, "small", 6_000)).unwrap();
    let mut s = TcpStream::connect(c.http.trim_start_matches("http://")).unwrap();
    write!(s, "POST /api/v1/images HTTP/1.1\r\nHost: bindwave\r\nContent-Length: {}\r\n\r\n", small.len()).unwrap();
    s.write_all(&small[..small.len() / 2]).unwrap();
    s.flush().unwrap();
    let images = c.data_dir.join("images");
    let unfinished = || {
        std::fs::read_dir(&images)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    };
    wait_until(Duration::from_secs(10), "the upload's temporary file", || unfinished() == 1);
    c.proc.kill();
    drop(s);
    assert_eq!(unfinished(), 1);

    let data_dir = c.data_dir.clone();
    c = Controller::start_secure_in(d, &data_dir, &[&args[..], &["--http-body-timeout-secs", "1"]].concat());
    assert_eq!(unfinished(), 0, "the unfinished upload is still there");
    let log = c.proc.log_text();
    assert!(log.contains("removed unfinished uploads") && log.contains("removed=1"), "{log}");

    // An upload that stops sending ends after the body timeout, and leaves nothing.
    let mut s = TcpStream::connect(c.http.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "POST /api/v1/images HTTP/1.1\r\nHost: bindwave\r\nContent-Length: {}\r\n\r\n", small.len()).unwrap();
    s.write_all(&small[..small.len() / 2]).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("upload interrupted"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "the stalled upload was held for {:?}", started.elapsed());
    assert_eq!(unfinished(), 0, "the stalled upload left its file");
}

#[test]
fn prometheus_scrapes_over_https_with_a_viewer_token_as_the_shipped_config_says() {
    let prometheus = Path::new("/usr/bin/prometheus");
    assert!(prometheus.exists(), "prometheus is not installed: `apt-get install -y prometheus`");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Controller::start_secure(d, &[]);
    let token = d.join("prometheus.token");
    std::fs::write(&token, c.ok(&["token", "create", "--name", "prometheus", "--role", "viewer"])).unwrap();
    let ca = c.data_dir.join("tls").join("ca.pem");

    // The shipped config with its commented HTTPS lines taken in, pointed at this controller.
    let shipped_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/prometheus.yml");
    let shipped = std::fs::read_to_string(&shipped_path).unwrap();
    let mut config = shipped.replace("127.0.0.1:8080", c.http.trim_start_matches("https://"));
    for (commented, live) in [
        ("    # scheme: https", "    scheme: https".to_string()),
        ("    # authorization:", "    authorization:".to_string()),
        (
            "    #   credentials_file: /etc/prometheus/bindwave.token",
            format!("      credentials_file: {}", token.display()),
        ),
        ("    # tls_config:", "    tls_config:".to_string()),
        ("    #   ca_file: /var/lib/bindwave/tls/ca.pem", format!("      ca_file: {}", ca.display())),
    ] {
        assert!(config.contains(commented), "{} no longer shows {commented:?}", shipped_path.display());
        config = config.replace(commented, &live);
    }
    let config = config.replace("scrape_interval: 15s", "scrape_interval: 1s");
    std::fs::write(d.join("prometheus.yml"), config).unwrap();
    let port = bindwave_tests::free_port();
    let mut cmd = Command::new(prometheus);
    cmd.arg(format!("--config.file={}", d.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", d.join("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let mut prom = bindwave_tests::Proc::spawn("prometheus", cmd, d);
    let base = format!("http://127.0.0.1:{port}");
    let mut targets = String::new();
    wait_until(Duration::from_secs(60), "Prometheus to scrape the controller", || {
        assert!(prom.alive(), "prometheus exited");
        targets = http_get(&base, "/api/v1/targets").map(|(_, b)| b).unwrap_or_default();
        targets.contains("\"health\":\"up\"")
    });
    assert!(targets.contains("https://"), "{targets}");
}
