//! The broker as a hostile client on the same network meets it, against the embedded broker (secure by
//! default) and against a real Mosquitto started with the shipped config and certificates from
//! `bindwave certs dev`:
//! - anonymous clients, wrong passwords and borrowed client ids are refused;
//! - a device logged in as A cannot publish hello or reports as B, cannot read B's commands or `#`, and cannot
//!   publish commands; its own lanes work;
//! - a full rollout works over TLS with the lanes enforced;
//! - an oversized retained message on a device topic is refused at the broker and never drops the
//!   controller's connection.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bindwave_link::TlsFiles;
use bindwave_tests::{assert_success, bin, run, wait_until, Controller, Mosquitto, Phone};
use rumqttc::{Client, ConnectReturnCode, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode, Transport};

const TABLE: &[(&str, u16)] = &[("S30817-S7702-A101", 3)];
const WAIT: Duration = Duration::from_secs(15);

fn provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A test MQTT client (rumqttc), its event loop in a thread that stops at the first error.
struct Mqtt {
    client: Client,
    packets: mpsc::Receiver<Packet>,
}

/// How a test client logs in.
#[derive(Default, Clone)]
struct Login<'a> {
    username: Option<&'a str>,
    password: Option<&'a str>,
    tls: TlsFiles,
}

impl Mqtt {
    /// Connects and waits for the CONNACK; the error says why the broker (or the TLS handshake) refused.
    fn connect(url: &str, client_id: &str, login: Login<'_>) -> Result<Mqtt, String> {
        let broker = bindwave_link::BrokerUrl::parse(url).expect("broker url");
        let mut o = MqttOptions::new(client_id, broker.host, broker.port);
        o.set_keep_alive(Duration::from_secs(5)).set_max_packet_size(1024 * 1024, 1024 * 1024);
        if let Some(u) = login.username {
            o.set_credentials(u, login.password.unwrap_or_default());
        }
        if broker.tls {
            let config = login.tls.client_config().expect("client TLS config");
            o.set_transport(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(config))));
        }
        let (client, mut conn) = Client::new(o, 100);
        let (tx, packets) = mpsc::channel();
        let (first_tx, first) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first_tx = Some(first_tx);
            for event in conn.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if let Some(f) = first_tx.take() {
                            let _ = f.send(if ack.code == ConnectReturnCode::Success {
                                Ok(())
                            } else {
                                Err(format!("{:?}", ack.code))
                            });
                        }
                    }
                    Ok(Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        if let Some(f) = first_tx.take() {
                            let _ = f.send(Err(e.to_string()));
                        }
                        let _ = tx.send(Packet::Disconnect);
                        return;
                    }
                }
            }
        });
        match first.recv_timeout(WAIT) {
            Ok(Ok(())) => Ok(Mqtt { client, packets }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("no CONNACK".into()),
        }
    }

    fn next(&self, what: &str, f: impl Fn(&Packet) -> bool) -> Packet {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.packets.recv_timeout(left) {
                Ok(p) if f(&p) => return p,
                Ok(Packet::Disconnect) => panic!("connection lost while waiting for {what}"),
                Ok(_) => {}
                Err(_) => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    /// Subscribes and returns whether the broker granted it.
    fn subscribe(&self, filter: &str) -> bool {
        self.client.subscribe(filter, QoS::AtLeastOnce).expect("queue SUBSCRIBE");
        let Packet::SubAck(ack) = self.next("SUBACK", |p| matches!(p, Packet::SubAck(_))) else { unreachable!() };
        matches!(ack.return_codes[..], [SubscribeReasonCode::Success(_)])
    }

    /// Publishes at QoS 1 and waits for the broker's ack (MQTT 3.1.1 acks a refused publish too).
    fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload.to_vec()).expect("queue PUBLISH");
        self.next("PUBACK", |p| matches!(p, Packet::PubAck(_)));
    }

    /// The next message within `limit`, if any.
    fn message(&self, limit: Duration) -> Option<Publish> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.packets.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(Packet::Publish(p)) => return Some(p),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

fn hello(id: &str) -> String {
    format!(
        r#"{{"device_id":"{id}","part_number":"S30817-S7702-A101","hardware_level":9,"hardware_level_source":"part_number","software_version":"V3 R3.11.0","minimum_software_version":"V3 R1.0.0","agent_version":"0.1.0"}}"#
    )
}

fn topic(device: &str, kind: &str) -> String {
    format!("bindwave/v1/devices/{device}/{kind}")
}

fn device_ids(c: &Controller) -> Vec<String> {
    let devices = c.json(&["device", "list", "-o", "json"]);
    devices.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
}

fn metric(c: &Controller, series: &str) -> f64 {
    let (_, body) = c.get("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// `bindwave certs dev` for these devices, into `dir/certs`.
fn dev_certs(dir: &Path, devices: &[&str]) -> PathBuf {
    let out = dir.join("certs");
    let mut cmd = std::process::Command::new(bin("bindwave"));
    cmd.args(["certs", "dev", "--out"]).arg(&out);
    for d in devices {
        cmd.args(["--device", d]);
    }
    assert_success(&run(&mut cmd), &["certs", "dev"]);
    out
}

fn cert_login(certs: &Path, who: &str) -> TlsFiles {
    TlsFiles {
        ca_file: Some(certs.join("ca.pem")),
        client_cert: Some(certs.join(format!("{who}.pem"))),
        client_key: Some(certs.join(format!("{who}.key"))),
    }
}

/// What device A, logged in, may and may not do; `b` is another device listening on its own commands.
/// The embedded broker refuses a subscription outside the lane; Mosquitto grants it and then delivers
/// nothing that the ACL does not let the client read, which the callers check with a real command to B.
fn device_a_stays_in_its_lane(a: &Mqtt, b: &Mqtt, refuses_subscriptions: bool) {
    // No reading of another device's commands, nor of everything.
    for filter in [topic("phone-b", "commands"), "#".into(), "bindwave/v1/devices/+/commands".into()] {
        let granted = a.subscribe(&filter);
        assert!(!(granted && refuses_subscriptions), "A subscribed to {filter}");
    }
    // Its own commands it may read.
    assert!(a.subscribe(&topic("phone-a", "commands")), "A may read its own commands");
    // No commands from a device, to B or to itself; no hello or reports as B.
    a.publish(&topic("phone-b", "commands"), br#"{"type":"update"}"#, false);
    a.publish(&topic("phone-a", "commands"), br#"{"type":"update"}"#, false);
    a.publish(&topic("phone-b", "hello"), hello("phone-b").replace("S30817-S7702-A101", "FORGED").as_bytes(), true);
    a.publish(&topic("phone-b", "reports"), br#"{"job_id":"x"}"#, true);
    assert!(b.message(Duration::from_secs(1)).is_none(), "B received a command a device published");
    // Whatever a broker answered to the wildcards, A reads nothing of B's: B's own publish never reaches A.
    b.publish(&topic("phone-b", "hello"), hello("phone-b").as_bytes(), false);
    assert!(a.message(Duration::from_secs(1)).is_none(), "A read a message through # or + or its own commands");
}

#[test]
fn the_embedded_broker_lets_in_only_logged_in_clients_and_keeps_each_device_in_its_lane() {
    provider();
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_secure(dir.path(), &[]);
    assert!(c.mqtt.starts_with("mqtts://"), "{}", c.mqtt);
    let tls = TlsFiles { ca_file: Some(c.ca()), ..TlsFiles::default() };
    let (pa, pb) = (c.device_password("phone-a"), c.device_password("phone-b"));
    let login = |u, p| Login { username: Some(u), password: Some(p), tls: tls.clone() };

    // Refused: anonymous, a wrong password, A's password for B, A's login with B's client id, plain MQTT.
    let anonymous = Mqtt::connect(&c.mqtt, "phone-a", Login { tls: tls.clone(), ..Login::default() });
    assert!(anonymous.is_err(), "an anonymous client was let in");
    assert!(Mqtt::connect(&c.mqtt, "phone-a", login("phone-a", "0123abcd")).is_err(), "a wrong password");
    assert!(Mqtt::connect(&c.mqtt, "phone-b", login("phone-b", &pa)).is_err(), "A's password for B");
    assert!(Mqtt::connect(&c.mqtt, "phone-b", login("phone-a", &pa)).is_err(), "A's login with B's client id");
    let plain = c.mqtt.replace("mqtts://", "mqtt://");
    assert!(Mqtt::connect(&plain, "phone-a", Login::default()).is_err(), "plain MQTT on the TLS port");
    // The client certificate of a stranger's CA does not help either: the broker is verified by the client.
    wait_until(WAIT, "the refused logins to be counted", || {
        metric(&c, "bindwave_refused_total{what=\"mqtt_auth\"}") >= 4.0
    });

    let a = Mqtt::connect(&c.mqtt, "phone-a", login("phone-a", &pa)).expect("A logs in");
    let b = Mqtt::connect(&c.mqtt, "phone-b", login("phone-b", &pb)).expect("B logs in");
    assert!(b.subscribe(&topic("phone-b", "commands")));
    device_a_stays_in_its_lane(&a, &b, true);
    // The embedded broker refused the wildcards outright, and counted every refusal.
    assert!(!a.subscribe("#"));
    assert!(metric(&c, "bindwave_refused_total{what=\"mqtt_subscribe_denied\"}") >= 4.0);
    assert!(metric(&c, "bindwave_refused_total{what=\"mqtt_publish_denied\"}") >= 4.0);

    // A's own hello arrives; A's forged hello as B (retained, published earlier) never did.
    a.publish(&topic("phone-a", "hello"), hello("phone-a").as_bytes(), false);
    wait_until(WAIT, "A's own hello", || device_ids(&c).contains(&"phone-a".to_string()));
    wait_until(WAIT, "B's own hello", || device_ids(&c).contains(&"phone-b".to_string()));
    let devices = c.json(&["device", "list", "-o", "json"]);
    let b_entry = devices.as_array().unwrap().iter().find(|d| d["id"] == "phone-b").unwrap();
    assert_eq!(b_entry["hello"]["part_number"], "S30817-S7702-A101", "A's forged hello as B counted: {b_entry:#}");
    // The refusals were logged once per client, not once per packet.
    let log = c.proc.log_text();
    let lines =
        log.lines().filter(|l| l.contains("client_id=\"phone-a\"") && l.contains("mqtt_publish_denied")).count();
    assert_eq!(lines, 1, "{log}");
}

#[test]
fn with_a_client_ca_the_certificate_is_the_identity() {
    provider();
    let dir = tempfile::tempdir().unwrap();
    let certs = dev_certs(dir.path(), &["phone-a", "phone-b"]);
    let p = |f: &str| certs.join(f).display().to_string();
    let c = Controller::start_secure(
        dir.path(),
        &[
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server.key"),
            "--mqtt-client-ca",
            &p("ca.pem"),
            "--broker-ca",
            &p("ca.pem"),
            "--broker-client-cert",
            &p("controller.pem"),
            "--broker-client-key",
            &p("controller.key"),
        ],
    );
    wait_until(WAIT, "the controller's own TLS login", || metric(&c, "bindwave_mqtt_connected") == 1.0);
    let ca_only = TlsFiles { ca_file: Some(certs.join("ca.pem")), ..TlsFiles::default() };
    let no_cert =
        Mqtt::connect(&c.mqtt, "phone-a", Login { username: Some("phone-a"), tls: ca_only, ..Login::default() });
    assert!(no_cert.is_err(), "a client without a certificate was let in");
    let borrowed = Mqtt::connect(&c.mqtt, "phone-b", Login { tls: cert_login(&certs, "phone-a"), ..Login::default() });
    assert!(borrowed.is_err(), "A's certificate with B's client id");
    // A username does not override the certificate.
    let a = Mqtt::connect(
        &c.mqtt,
        "phone-a",
        Login { username: Some("bindwave:controller"), tls: cert_login(&certs, "phone-a"), ..Login::default() },
    )
    .expect("A logs in with its certificate");
    let b = Mqtt::connect(&c.mqtt, "phone-b", Login { tls: cert_login(&certs, "phone-b"), ..Login::default() })
        .expect("B logs in");
    assert!(b.subscribe(&topic("phone-b", "commands")));
    device_a_stays_in_its_lane(&a, &b, true);
}

/// Three phones' worth of rollout, one phone here: the command, the download, the reports, all over TLS with
/// the device logged in.
fn one_phone_rollout(c: &Controller, dir: &Path, login: &str) {
    let phone = Phone {
        id: "phone-a",
        part_number: "S30817-S7702-A101",
        software_version: "V3 R3.11.0",
        minimum_software_version: "V3 R1.0.0",
    };
    // The bind comes over HTTPS: the phone trusts the controller's CA for downloads too.
    let download = format!("[download]\nca_file = {:?}\n", c.http_ca().display().to_string());
    let _agent = phone.start_login(dir, &c.mqtt, login, TABLE, &download);
    wait_until(Duration::from_secs(30), "the phone's hello", || device_ids(c).contains(&"phone-a".to_string()));
    let image = c.pack_and_add(dir, "fw", "V3 R3.18.0", Some("3"));
    let r = c.ok(&["rollout", "create", "--image", &image, "--devices", "phone-a", "--start"]);
    let mut status = serde_json::Value::Null;
    wait_until(Duration::from_secs(60), "the rollout to finish", || {
        status = c.json(&["rollout", "status", &r, "-o", "json"]);
        status["rollout"]["state"] == "finished"
    });
    assert_eq!(status["counts"]["succeeded"], 1, "{status:#}");
    assert_eq!(status["jobs"][0]["phase"]["running_version"], "V3 R3.18.0", "{status:#}");
}

#[test]
fn a_rollout_through_the_secure_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_secure(dir.path(), &[]);
    one_phone_rollout(&c, dir.path(), &c.phone_login("phone-a"));
}

#[test]
fn mosquitto_with_the_shipped_config_refuses_strangers_and_keeps_each_device_in_its_lane() {
    provider();
    let dir = tempfile::tempdir().unwrap();
    let certs = dev_certs(dir.path(), &["phone-a", "phone-b"]);
    let broker = Mosquitto::start_shipped(dir.path(), "bindwave.conf", &certs);
    let ca_only = TlsFiles { ca_file: Some(certs.join("ca.pem")), ..TlsFiles::default() };
    assert!(
        Mqtt::connect(&broker.url, "phone-a", Login { tls: ca_only.clone(), ..Login::default() }).is_err(),
        "a client without a certificate was let in"
    );
    let plain = broker.url.replace("mqtts://", "mqtt://");
    assert!(Mqtt::connect(&plain, "phone-a", Login::default()).is_err(), "plain MQTT was let in");

    let a = Mqtt::connect(&broker.url, "phone-a", Login { tls: cert_login(&certs, "phone-a"), ..Login::default() })
        .expect("A logs in with its certificate");
    let b = Mqtt::connect(&broker.url, "phone-b", Login { tls: cert_login(&certs, "phone-b"), ..Login::default() })
        .expect("B logs in");
    assert!(b.subscribe(&topic("phone-b", "commands")));
    let controller = Mqtt::connect(
        &broker.url,
        "bindwave:controller",
        Login { tls: cert_login(&certs, "controller"), ..Login::default() },
    )
    .expect("the controller logs in");
    assert!(controller.subscribe("bindwave/v1/devices/+/hello"));
    assert!(controller.subscribe("bindwave/v1/devices/+/reports"));
    device_a_stays_in_its_lane(&a, &b, false);
    // The controller heard B's own hello, and none of A's forgeries as B (A's retained ones included).
    let heard = controller.message(WAIT).expect("B's own hello");
    assert_eq!(heard.topic, topic("phone-b", "hello"));
    assert!(!heard.retain && !String::from_utf8_lossy(&heard.payload).contains("FORGED"), "{heard:?}");
    assert!(controller.message(Duration::from_secs(1)).is_none(), "a forged message reached the controller");
    // A's own lanes work: its hello reaches the controller, and the controller's command reaches A.
    a.publish(&topic("phone-a", "hello"), hello("phone-a").as_bytes(), false);
    assert_eq!(controller.message(WAIT).expect("A's own hello").topic, topic("phone-a", "hello"));
    controller.publish(&topic("phone-a", "commands"), br#"{"type":"ack","job_id":"j"}"#, false);
    assert_eq!(a.message(WAIT).expect("the controller's command").topic, topic("phone-a", "commands"));
    // A command to B reaches B, and not A, whose `#` and B-commands subscriptions Mosquitto granted.
    controller.publish(&topic("phone-b", "commands"), br#"{"type":"ack","job_id":"k"}"#, false);
    assert_eq!(b.message(WAIT).expect("the command to B").topic, topic("phone-b", "commands"));
    assert!(a.message(Duration::from_secs(1)).is_none(), "A read B's command");
    // A certificate's identity is also its client id (use_username_as_clientid): A naming B's client id takes
    // over only its own session, and B stays connected.
    let _as_b = Mqtt::connect(&broker.url, "phone-b", Login { tls: cert_login(&certs, "phone-a"), ..Login::default() });
    b.publish(&topic("phone-b", "presence"), br#"{"online":true}"#, false);
}

#[test]
fn a_rollout_through_mosquitto_with_tls_and_the_lanes() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dev_certs(dir.path(), &["phone-a"]);
    let broker = Mosquitto::start_shipped(dir.path(), "bindwave.conf", &certs);
    let p = |f: &str| certs.join(f).display().to_string();
    let c = Controller::start_secure(
        dir.path(),
        &[
            "--broker",
            &broker.url,
            "--broker-ca",
            &p("ca.pem"),
            "--broker-client-cert",
            &p("controller.pem"),
            "--broker-client-key",
            &p("controller.key"),
        ],
    );
    let login = format!(
        "ca_file = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
        p("ca.pem"),
        p("phone-a.pem"),
        p("phone-a.key")
    );
    one_phone_rollout(&c, dir.path(), &login);
}

/// A retained message larger than the broker's packet limit, on a device topic the controller reads: the
/// broker refuses it (and drops the publisher), so the controller's link never meets it and stays up.
#[test]
fn an_oversized_retained_message_never_drops_the_controller() {
    provider();
    let dir = tempfile::tempdir().unwrap();
    // Lab mode, where anyone may publish anywhere: the packet limit is what protects the controller.
    let c = Controller::start(dir.path());
    wait_until(WAIT, "the controller's link", || metric(&c, "bindwave_mqtt_connected") == 1.0);
    let big = vec![b'x'; 300 * 1024];
    let attacker = Mqtt::connect(&c.mqtt, "attacker", Login::default()).expect("lab mode lets anyone in");
    attacker.client.publish(topic("ghost", "reports"), QoS::AtLeastOnce, true, big).expect("queue PUBLISH");
    attacker.next("the broker to drop the oversized publisher", |p| matches!(p, Packet::Disconnect));
    // The controller keeps its connection and goes on reading devices.
    let phone = Mqtt::connect(&c.mqtt, "phone-a", Login::default()).expect("a phone");
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(metric(&c, "bindwave_mqtt_connected"), 1.0, "the controller lost its broker");
    }
    phone.publish(&topic("phone-a", "hello"), hello("phone-a").as_bytes(), false);
    wait_until(WAIT, "the phone's hello", || device_ids(&c).contains(&"phone-a".to_string()));
    // A restart subscribes again: nothing oversized was retained to meet it.
    let mut c = c;
    c.restart(dir.path());
    wait_until(WAIT, "the controller's link after a restart", || metric(&c, "bindwave_mqtt_connected") == 1.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(metric(&c, "bindwave_mqtt_connected"), 1.0);
    assert!(!c.proc.log_text().contains("lost the broker"), "{}", c.proc.log_text());
}

/// Plain MQTT is asked for by name only, and said loudly.
#[test]
fn plain_mqtt_needs_lab_mode_which_is_logged_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(bin("bindwave"))
        .args(["serve", "--broker", "mqtt://127.0.0.1:1", "--data-dir"])
        .arg(dir.path().join("d")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broker: mqtt://127.0.0.1:1 is plain MQTT") && err.contains("insecure_lab"), "{err}");
    let c = Controller::start(dir.path());
    assert!(c.lab && c.mqtt.starts_with("mqtt://"));
    let log = c.proc.log_text();
    assert!(log.contains("WARN") && log.contains("INSECURE LAB MODE"), "{log}");
}

/// `bindwave simulate` logs its phones in to a secure controller with the controller's CA and passwords.
#[test]
fn a_simulated_fleet_logs_in_to_a_secure_controller() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_secure(dir.path(), &[]);
    let mut cmd = std::process::Command::new(bin("bindwave"));
    cmd.args(["simulate", "--devices", "3", "--broker", &c.mqtt, "--controller-data-dir"])
        .arg(&c.data_dir)
        .arg("--state-dir")
        .arg(dir.path().join("fleet"));
    let _fleet = bindwave_tests::Proc::spawn("fleet", cmd, dir.path());
    wait_until(Duration::from_secs(30), "three simulated phones", || device_ids(&c).len() == 3);
    assert_eq!(metric(&c, "bindwave_refused_total{what=\"mqtt_auth\"}"), 0.0);
}

/// The shipped password variant of the Mosquitto config: logins from a `mosquitto_passwd` file, the same ACL.
#[test]
fn mosquitto_with_passwords_refuses_strangers_and_keeps_the_lanes() {
    provider();
    let dir = tempfile::tempdir().unwrap();
    let certs = dev_certs(dir.path(), &[]);
    let passwords = certs.join("passwords");
    for (i, (user, password)) in [("phone-a", "pa-secret"), ("phone-b", "pb-secret")].iter().enumerate() {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        if i == 0 {
            cmd.arg("-c");
        }
        assert_success(&run(cmd.arg("-b").arg(&passwords).args([user, password])), &["mosquitto_passwd"]);
    }
    let broker = Mosquitto::start_shipped(dir.path(), "bindwave-password.conf", &certs);
    let tls = TlsFiles { ca_file: Some(certs.join("ca.pem")), ..TlsFiles::default() };
    let login = |u, p| Login { username: Some(u), password: Some(p), tls: tls.clone() };
    assert!(
        Mqtt::connect(&broker.url, "phone-a", Login { tls: tls.clone(), ..Login::default() }).is_err(),
        "anonymous"
    );
    assert!(Mqtt::connect(&broker.url, "phone-a", login("phone-a", "pb-secret")).is_err(), "B's password for A");
    let a = Mqtt::connect(&broker.url, "phone-a", login("phone-a", "pa-secret")).expect("A logs in");
    let b = Mqtt::connect(&broker.url, "phone-b", login("phone-b", "pb-secret")).expect("B logs in");
    assert!(b.subscribe(&topic("phone-b", "commands")));
    device_a_stays_in_its_lane(&a, &b, false);
}
