//! Analysis gates against a real Prometheus (Debian's `prometheus` package), scraping a small exporter this
//! test controls: a query that holds lets the rollout go on, one that fails pauses it with the value and the
//! query in the audit log, and one without data pauses it and never lets it advance.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bindwave_tests::{free_port, http_get, wait_until, Controller, Phone, Proc};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const TABLE: &[(&str, u16)] = &[("S30817-S7702-A101", 3)];

/// An exporter serving `pbx_call_failure_ratio{site="munich"}` with the value the test sets.
struct Exporter {
    addr: String,
    value: Arc<Mutex<String>>,
}

impl Exporter {
    fn start(value: &str) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the exporter");
        let addr = listener.local_addr().expect("its address").to_string();
        let value = Arc::new(Mutex::new(value.to_string()));
        let v = value.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut conn = conn;
                let mut buf = [0u8; 2048];
                let _ = conn.read(&mut buf);
                let body = format!(
                    "# TYPE pbx_call_failure_ratio gauge\npbx_call_failure_ratio{{site=\"munich\"}} {}\n",
                    v.lock().unwrap()
                );
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(body.as_bytes()));
            }
        });
        Exporter { addr, value }
    }

    fn set(&self, value: &str) {
        *self.value.lock().unwrap() = value.to_string();
    }
}

/// Prometheus scraping the exporter every second.
fn prometheus(dir: &Path, exporter: &Exporter) -> (Proc, String) {
    assert!(Path::new(PROMETHEUS).exists(), "{PROMETHEUS} is not installed: `apt-get install -y prometheus`");
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pbx\n    static_configs:\n      - targets: [\"{}\"]\n",
        exporter.addr
    );
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, config).expect("prometheus config");
    let port = free_port();
    let mut cmd = Command::new(PROMETHEUS);
    cmd.arg(format!("--config.file={}", path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let mut proc = Proc::spawn("prometheus", cmd, dir);
    let base = format!("http://127.0.0.1:{port}");
    wait_until(Duration::from_secs(120), "Prometheus to scrape the exporter", || {
        assert!(proc.alive(), "prometheus exited");
        http_get(&base, "/api/v1/query?query=pbx_call_failure_ratio")
            .is_ok_and(|(status, body)| status == 200 && body.contains("munich"))
    });
    (proc, base)
}

fn state(c: &Controller, r: &str) -> Value {
    c.json(&["rollout", "status", r, "-o", "json"])["rollout"].clone()
}

fn rollout(c: &Controller, image: &str, analysis: &str) -> String {
    let args = [
        "rollout",
        "create",
        "--image",
        image,
        "--all",
        "--waves",
        "1,100%",
        "--soak",
        "3s",
        "--analysis-every",
        "1s",
        "--analysis",
        analysis,
        "--start",
    ];
    c.ok(&args)
}

#[test]
fn analysis_gates_pass_fail_and_never_pass_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let exporter = Exporter::start("0.001");
    let (_prom, prom_url) = prometheus(d, &exporter);
    let c = Controller::start_serving(d, &["--allow-unsigned-images", "--prometheus-url", &prom_url]);
    let _phones: Vec<Proc> = ["phone-1", "phone-2"]
        .iter()
        .map(|id| {
            Phone { id, part_number: TABLE[0].0, software_version: "V3 R3.11.0", minimum_software_version: "V3 R1.0.0" }
                .start(d, &c.mqtt, TABLE)
        })
        .collect();
    wait_until(Duration::from_secs(60), "both phones online", || {
        c.json(&["device", "list", "-o", "json"]).as_array().unwrap().iter().filter(|d| d["online"] == true).count()
            == 2
    });
    let query = r#"max(pbx_call_failure_ratio{site="munich"}) < 0.01"#;

    // Holds: three measurements a second apart through the soak, and the rollout finishes.
    let r1 = rollout(&c, &c.pack_and_add(d, "fw1", "V3 R3.18.0", None), query);
    wait_until(Duration::from_secs(60), "r1 to finish", || state(&c, &r1)["state"] == "finished");

    // Fails: the first wave passes, the analysis measures 0.5, and the rollout pauses before wave 2.
    exporter.set("0.5");
    wait_until(Duration::from_secs(30), "Prometheus to see 0.5", || {
        http_get(&prom_url, "/api/v1/query?query=pbx_call_failure_ratio").is_ok_and(|(_, b)| b.contains("\"0.5\""))
    });
    let r2 = rollout(&c, &c.pack_and_add(d, "fw2", "V3 R3.19.0", None), query);
    wait_until(Duration::from_secs(60), "r2 to pause on its analysis", || state(&c, &r2)["state"] == "paused");
    let stopped = state(&c, &r2);
    assert_eq!(stopped["cause"]["cause"], "analysis_failed", "{stopped:#}");
    assert_eq!(stopped["cause"]["value"], 0.5);
    assert_eq!(stopped["wave"], 0);
    let audit = c.ok(&["audit", "--rollout", &r2]);
    assert!(
        audit.contains("measured 0.5") && audit.contains("max(pbx_call_failure_ratio{site=\"munich\"})"),
        "{audit}"
    );
    let s = c.json(&["rollout", "status", &r2, "-o", "json"]);
    assert_eq!(s["counts"]["pending"], 1, "wave 2 was never commanded: {:#}", s["counts"]);
    // The status shows the gate as the engine judged it: measured, failed, past what it tolerates, the value.
    let reading = &s["analyses"][0];
    assert_eq!((reading["measured"].as_u64(), reading["failed"].as_u64()), (Some(1), Some(1)), "{reading:#}");
    assert_eq!(
        (reading["failure_limit"].as_u64(), reading["last_value"].as_f64()),
        (Some(0), Some(0.5)),
        "{reading:#}"
    );
    let words = format!("1 of {} measured, 1 failed (0 tolerated), last 0.5", reading["count"]);
    let table = c.ok(&["rollout", "status", &r2]);
    assert!(table.contains(&words), "{words:?} in\n{table}");

    // No data: a query of a metric nobody exports pauses the rollout, and it stays paused.
    c.ok(&["rollout", "abort", &r2, "--reason", "test"]);
    let r3 = rollout(&c, &c.pack_and_add(d, "fw3", "V3 R3.20.0", None), "max(pbx_no_such_metric) < 1");
    wait_until(Duration::from_secs(60), "r3 to pause for want of data", || state(&c, &r3)["state"] == "paused");
    let stopped = state(&c, &r3);
    assert_eq!(stopped["cause"]["cause"], "analysis_inconclusive", "{stopped:#}");
    assert!(stopped["cause"]["detail"].as_str().unwrap().contains("no data"), "{stopped:#}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(state(&c, &r3)["state"], "paused", "it never advances on its own");
}
