//! The OpenAPI description against the real `bindwave serve`: served without a token, and every operation it
//! describes is one the router answers (not the "no such endpoint" fallback, not a 405), with the role it says.

use bindwave_tests::Controller;
use serde_json::Value;

/// A path of the description with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "r999")
        .replace("{action}", "pause")
        .replace("{name}", "nobody")
        .replace("{file}", &format!("{}.bind", "0".repeat(64)))
}

/// GET a server-sent-events stream for two seconds: the status and what arrived.
fn first_event(c: &Controller, token: Option<&str>, path: &str) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-N", "--max-time", "2", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(c.http_ca())
        .arg(format!("{}{path}", c.http));
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    // curl ends on its time limit (exit 28) with the stream still open.
    let out = bindwave_tests::run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl's status line");
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn every_described_operation_is_routed_and_nothing_else_is() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start_secure(dir.path(), &[]);
    let admin = std::fs::read_to_string(c.data_dir.join("admin.token")).unwrap();
    let admin = admin.trim();

    // Public: a client generator needs no token to read it.
    let (status, body) = c.curl(None, "GET", "/api/v1/openapi.json", None);
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "Bindwave");
    // `bindwave openapi` prints the same without a controller.
    let printed = bindwave_tests::run(std::process::Command::new(bindwave_tests::bin("bindwave")).arg("openapi"));
    bindwave_tests::assert_success(&printed, &["openapi"]);
    assert_eq!(serde_json::from_slice::<Value>(&printed.stdout).unwrap(), doc);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{:?}", paths.keys().collect::<Vec<_>>());

    let mut checked = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let url = concrete(path);
            let body = (method != "GET").then_some("{}");
            if op["responses"]["200"]["content"].get("text/event-stream").is_some() {
                // A stream that does not end: its first event, then the test hangs up.
                let (status, first) = first_event(&c, Some(admin), &url);
                assert_eq!(status, 200, "{method} {url}");
                assert!(first.starts_with("event: change\ndata: {\"changes\":"), "{method} {url}: {first}");
                assert_eq!(first_event(&c, None, &url).0, 401);
                checked += 1;
                continue;
            }
            let (status, answer) = c.curl(Some(admin), &method, &url, body);
            let what = format!("{method} {url}: {status} {answer}");
            assert!(!answer.contains("no such endpoint"), "described but not routed: {what}");
            assert!(![405, 500].contains(&status), "{what}");
            // Without a token, an operation that names a role refuses; a public one does not ask.
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            let (anonymous, _) = c.curl(None, &method, &url, body);
            assert_eq!(anonymous == 401, secured, "{method} {url} without a token: {anonymous}");
            checked += 1;
        }
    }
    assert!(checked >= 24, "{checked} operations");

    // What is not described is not routed.
    let (status, answer) = c.curl(Some(admin), "GET", "/api/v1/nothing", None);
    assert_eq!(status, 404);
    assert!(answer.contains("no such endpoint"), "{answer}");
    // The emergency stop above stopped nothing (nothing runs), and the controller is still well.
    assert_eq!(c.curl(None, "GET", "/healthz", None), (200, "ok\n".to_string()));
}
