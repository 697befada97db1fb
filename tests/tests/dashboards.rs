//! The Grafana dashboards in `dashboards/`, proven against the real thing: `bindwave demo` runs three rollouts,
//! a real Prometheus (Debian's `prometheus` package) scrapes the controller with the shipped scrape config, and
//! every query of every dashboard must parse and return data. The controller's exposition must pass
//! `promtool check metrics`, and every metric the dashboards name must be one the controller exports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bindwave_tests::demo::Demo;
use bindwave_tests::{assert_success, free_port, run, wait_until, Proc};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// The demo's rollouts: a panel about one rollout (`$rollout`) must show data for at least one of them (r1 has
/// hardware rejections, r2 software rejections, r3 failures and a stop cause).
const ROLLOUTS: [&str; 3] = ["r1", "r2", "r3"];

/// Fails with what to install when Debian's `prometheus` package is missing.
fn require(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(p.exists(), "{path} is not installed: `apt-get install -y prometheus` (it brings prometheus and promtool)");
    p
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs_f64()
}

// ---------------------------------------------------------------------------------------------- the dashboards

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every dashboard (`dashboards/*.json`): its file name and JSON.
fn dashboards() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dashboards_dir()).expect("dashboards/") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("dashboard file");
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            found.push((path.file_name().expect("file name").to_string_lossy().into_owned(), json));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["fleet-overview.json", "rollout-detail.json"] {
        assert!(names.contains(&expected), "no {expected} among the dashboards in {}", dashboards_dir().display());
    }
    found
}

/// A PromQL expression of a panel, with the panel it belongs to.
struct PanelQuery {
    place: String,
    expr: String,
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// Every `targets[].expr` of a dashboard. Also checks that each panel asks the `${datasource}` variable, so the
/// dashboard imports into any Grafana.
fn panel_queries(name: &str, dash: &Value) -> Vec<PanelQuery> {
    let mut queries = Vec::new();
    for panel in panels(dash) {
        if panel["type"] == "row" {
            continue;
        }
        let place = format!("{name}: panel {} \"{}\"", panel["id"], panel["title"].as_str().unwrap_or_default());
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{place} must use the datasource variable");
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "{place} has no query");
        for target in targets {
            if target["hide"] == true {
                continue;
            }
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{place} must use the datasource variable");
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{place}: a target without expr"));
            let refid = target["refId"].as_str().unwrap_or("?");
            queries.push(PanelQuery { place: format!("{place} query {refid}"), expr: expr.to_string() });
        }
    }
    queries
}

/// The query variables of a dashboard as (name, metric, label), from `label_values(metric, label)`.
fn variable_queries(name: &str, dash: &Value) -> Vec<(String, String, String)> {
    let mut vars = Vec::new();
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let var = v["name"].as_str().unwrap_or_default().to_string();
        match v["type"].as_str() {
            Some("datasource") => assert_eq!(v["query"], "prometheus", "{name}: ${var} must list Prometheus sources"),
            Some("query") => {
                let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or_default();
                let inner = q.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')).unwrap_or_else(|| {
                    panic!("{name}: variable ${var}: only label_values(metric, label) is checked: {q}")
                });
                let (metric, label) =
                    inner.split_once(',').unwrap_or_else(|| panic!("{name}: variable ${var}: no label in {q}"));
                let (metric, label) = (metric.trim().to_string(), label.trim().to_string());
                // Grafana's variable editor keeps the parts beside the string; they must agree.
                for (field, part) in [("metric", &metric), ("label", &label)] {
                    if let Some(stored) = v["query"][field].as_str() {
                        assert_eq!(stored, part, "{name}: variable ${var}: query.{field} disagrees with {q}");
                    }
                }
                vars.push((var, metric, label));
            }
            other => panic!("{name}: variable ${var} of type {other:?} is not checked by this test"),
        }
    }
    vars
}

/// Replaces `$name` and `${name}` (and `${name:format}`) with their values; an unknown variable is an error.
fn substitute(expr: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let (name, used) = if let Some(braced) = tail.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            let inner = &braced[..end];
            (inner.split(':').next().unwrap_or(inner), end + 2)
        } else {
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            (&tail[..end], end)
        };
        let value = vars.get(name).ok_or_else(|| format!("unknown variable ${name} in {expr}"))?;
        out.push_str(value);
        rest = &tail[used..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Metric names a PromQL expression mentions (those of the controller and its process).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (i, _) in expr.match_indices("bindwave_").chain(expr.match_indices("process_")) {
        if expr[..i].chars().next_back().is_some_and(is_name) {
            continue; // inside a longer name
        }
        let tail = &expr[i..];
        names.insert(tail[..tail.find(|c: char| !is_name(c)).unwrap_or(tail.len())].to_string());
    }
    names
}

// ---------------------------------------------------------------------------------------------- the processes

/// A real Prometheus on a free port, scraping `target` every second with the shipped scrape config.
struct Prometheus {
    proc: Proc,
    base: String,
}

impl Prometheus {
    fn start(dir: &Path, demo: &Demo) -> Prometheus {
        let exe = require(PROMETHEUS);
        let shipped_path = dashboards_dir().join("prometheus.yml");
        let shipped = std::fs::read_to_string(&shipped_path).expect("dashboards/prometheus.yml");
        // The shipped config, pointed at the demo and scraping every second so that rate() has samples soon,
        // with its commented HTTPS lines taken in (the demo's controller is not in lab mode).
        let target = demo.http.trim_start_matches("https://");
        let mut config =
            shipped.replace("127.0.0.1:8080", target).replace("scrape_interval: 15s", "scrape_interval: 1s");
        for (commented, live) in [
            ("    # scheme: https", "    scheme: https".to_string()),
            ("    # authorization:", "    authorization:".to_string()),
            (
                "    #   credentials_file: /etc/prometheus/bindwave.token",
                format!("      credentials_file: {}", demo.token_file().display()),
            ),
            ("    # tls_config:", "    tls_config:".to_string()),
            ("    #   ca_file: /var/lib/bindwave/tls/ca.pem", format!("      ca_file: {}", demo.ca().display())),
        ] {
            assert!(config.contains(commented), "{} no longer shows {commented:?}", shipped_path.display());
            config = config.replace(commented, &live);
        }
        assert!(
            config.contains(target) && config.contains("scrape_interval: 1s"),
            "{} no longer has `scrape_interval: 15s` and the target 127.0.0.1:8080 this test rewrites:\n{shipped}",
            shipped_path.display()
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus config");
        let port = free_port();
        let mut cmd = Command::new(exe);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut prom = Prometheus { proc: Proc::spawn("prometheus", cmd, dir), base: format!("127.0.0.1:{port}") };
        let (proc, base) = (&mut prom.proc, &prom.base);
        wait_until(Duration::from_secs(120), "Prometheus to be ready (/-/ready)", || {
            assert!(proc.alive(), "prometheus exited");
            get(base, "/-/ready").is_ok_and(|(status, _)| status == 200)
        });
        prom
    }

    /// An instant query at `time` (now if `None`): Prometheus' JSON answer, or its raw answer if not JSON.
    fn query(&self, expr: &str, time: Option<f64>) -> Result<Value, String> {
        let mut path = format!("/api/v1/query?query={}", encode(expr));
        if let Some(t) = time {
            path.push_str(&format!("&time={t:.3}"));
        }
        self.api(&path)
    }

    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = get(&self.base, path).map_err(|e| format!("GET {path}: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))
    }

    /// The single value of an instant query now, if it has one.
    fn value(&self, expr: &str) -> Option<f64> {
        let answer = self.query(expr, None).ok()?;
        let result = answer["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// The time of the last successful scrape of the controller.
    fn last_scrape(&self) -> Option<f64> {
        self.value("max(timestamp(bindwave_build_info))")
    }

    fn wait_scraped_after(&self, t: f64, what: &str) {
        wait_until(Duration::from_secs(120), what, || self.last_scrape().is_some_and(|s| s >= t));
    }
}

/// A plain HTTP/1.0 GET (so the answer is never chunked): status and body.
fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let resp = String::from_utf8_lossy(&resp);
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Percent-encodes a query-string value (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether an answer of /api/v1/query shows something on a panel: success, and at least one finite value (a
/// histogram_quantile over no observations is NaN, which a panel shows as nothing).
fn has_data(answer: &Value) -> bool {
    let finite = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).is_some_and(f64::is_finite);
    if answer["status"] != "success" {
        return false;
    }
    let result = &answer["data"]["result"];
    match answer["data"]["resultType"].as_str() {
        Some("vector") => result.as_array().is_some_and(|r| r.iter().any(|s| finite(&s["value"][1]))),
        Some("scalar") => finite(&result[1]),
        _ => false,
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(800) {
        Some((i, _)) => format!("{}... ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------- the tests

#[test]
fn every_metric_in_the_dashboards_is_exported_and_the_exposition_passes_promtool() {
    let promtool = require(PROMTOOL);
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(dir.path(), free_port());
    demo.wait_done();
    let (status, body) = demo.get("/metrics");
    assert_eq!(status, 200, "{body}");
    // Names of the samples (histograms' _bucket, _sum and _count included), after three rollouts.
    let exported: BTreeSet<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut checked = 0;
    for (name, dash) in dashboards() {
        let exprs = panel_queries(&name, &dash).into_iter().map(|q| (q.place, q.expr));
        let vars = variable_queries(&name, &dash).into_iter().map(|(v, metric, _)| (format!("{name}: ${v}"), metric));
        for (place, expr) in exprs.chain(vars) {
            for metric in metric_names(&expr) {
                assert!(
                    exported.contains(metric.as_str()),
                    "{place} uses {metric}, which the controller does not export:\n{body}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "only {checked} metric names found in the dashboards");

    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics found problems in the controller's /metrics ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    require(PROMETHEUS);
    let out =
        run(Command::new(require(PROMTOOL)).args(["check", "config"]).arg(dashboards_dir().join("prometheus.yml")));
    assert_success(&out, &["promtool", "check", "config", "dashboards/prometheus.yml"]);
    let dashboards = dashboards();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Prometheus as soon as the controller serves, so that it watches the rollouts from the start (the fleet
    // connects first).
    let started = now();
    let mut demo = Demo::start(dir.path(), port);
    let prom = Prometheus::start(dir.path(), &demo);
    demo.wait_done();
    prom.wait_scraped_after(now() + 2.0, "Prometheus to scrape the demo's end state");

    // The demo's rollouts may have run between two scrapes, and rate() sees nothing of a series born with its
    // final value. So an operator retries r3's failed phones, under Prometheus' eyes: they fail again
    // (checksum_mismatch) and the failure gate pauses r3 again. Downloads, job latencies, MQTT traffic, commits
    // and API requests all move.
    let failed = r#"sum(bindwave_job_duration_seconds_count{rollout="r3", outcome="failed"})"#;
    let failed_before = prom.value(failed).expect("r3's failed jobs in Prometheus");
    let before_retry = prom.last_scrape().expect("a scrape");
    demo.cli(&["rollout", "retry", "r3", "--reason", "dashboards test", "--actor", "test"]);
    demo.cli(&["rollout", "resume", "r3", "--reason", "dashboards test", "--actor", "test"]);
    wait_until(Duration::from_secs(180), "r3's retried phones to fail again, seen by Prometheus", || {
        let open = r#"sum(bindwave_rollout_devices{rollout="r3", wave="1", state=~"pending|in_progress"})"#;
        let paused = r#"bindwave_rollout_state{rollout="r3", state="paused"}"#;
        prom.value(failed).is_some_and(|n| n > failed_before)
            && prom.value(open) == Some(0.0)
            && prom.value(paused) == Some(1.0)
    });
    prom.wait_scraped_after(now() + 2.0, "Prometheus to scrape twice more");

    // Evaluate everything at one instant, with windows that reach back before the retry (rate() needs a
    // sample on each side) and, for $__range, to Prometheus' start.
    let at = now();
    let rate_window = ((at - before_retry).ceil() as u64 + 30).max(60);
    let range = ((at - started).ceil() as u64 + 30).max(300);
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("__rate_interval", format!("{rate_window}s"));
    vars.insert("__interval", "15s".into());
    vars.insert("__range", format!("{range}s"));
    eprintln!("evaluating at {at:.3}: $__rate_interval={rate_window}s $__range={range}s $__interval=15s");

    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, dash) in &dashboards {
        for (var, metric, label) in variable_queries(name, dash) {
            let path = format!(
                "/api/v1/label/{}/values?match[]={}&start={started:.3}&end={at:.3}",
                encode(&label),
                encode(&metric)
            );
            let answer = prom.api(&path);
            let values: Vec<&str> = answer
                .as_ref()
                .ok()
                .and_then(|a| a["data"].as_array())
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let complete = !values.is_empty() && (label != "rollout" || ROLLOUTS.iter().all(|r| values.contains(r)));
            if !complete {
                failures.push(format!("{name}: variable ${var} = label_values({metric}, {label}): {answer:?}"));
            }
            checked += 1;
        }
        for q in panel_queries(name, dash) {
            let per_rollout = q.expr.contains("$rollout") || q.expr.contains("${rollout");
            let candidates: Vec<Option<&str>> =
                if per_rollout { ROLLOUTS.iter().copied().map(Some).collect() } else { vec![None] };
            let mut answers = Vec::new();
            let mut ok = false;
            for rollout in candidates {
                let mut vars = vars.clone();
                if let Some(r) = rollout {
                    vars.insert("rollout", r.to_string());
                }
                let expr = match substitute(&q.expr, &vars) {
                    Ok(e) => e,
                    Err(e) => {
                        answers.push(e);
                        break;
                    }
                };
                match prom.query(&expr, Some(at)) {
                    Ok(answer) if has_data(&answer) => {
                        ok = true;
                        break;
                    }
                    Ok(answer) => answers.push(format!("{expr}\n    -> {}", shorten(&answer.to_string()))),
                    Err(e) => answers.push(format!("{expr}\n    -> {}", shorten(&e))),
                }
            }
            if !ok {
                failures.push(format!("{}: {}\n  {}", q.place, q.expr, answers.join("\n  ")));
            }
            checked += 1;
        }
    }
    eprintln!("checked {checked} dashboard queries against Prometheus");
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries have no data in Prometheus:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(checked > 60, "only {checked} queries found in the dashboards");
}

#[test]
fn variables_are_substituted_and_unknown_ones_refused() {
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("rollout", "r3".into());
    vars.insert("__rate_interval", "1m".into());
    let expr = r#"rate(x{rollout="$rollout", r="${rollout}", f="${rollout:regex}"}[$__rate_interval])"#;
    assert_eq!(substitute(expr, &vars).unwrap(), r#"rate(x{rollout="r3", r="r3", f="r3"}[1m])"#);
    assert!(substitute("x[$__range]", &vars).is_err());
    assert_eq!(encode("a b{c=\"d\"}[1m]"), "a%20b%7Bc%3D%22d%22%7D%5B1m%5D");
    assert_eq!(
        metric_names("sum(process_resident_memory_bytes and on (job) bindwave_build_info) / xbindwave_no"),
        BTreeSet::from(["process_resident_memory_bytes".to_string(), "bindwave_build_info".to_string()])
    );
}
