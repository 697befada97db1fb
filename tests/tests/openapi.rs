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
    assert!(checked >= 19, "{checked} operations");

    // What is not described is not routed.
    let (status, answer) = c.curl(Some(admin), "GET", "/api/v1/nothing", None);
    assert_eq!(status, 404);
    assert!(answer.contains("no such endpoint"), "{answer}");
    // The emergency stop above stopped nothing (nothing runs), and the controller is still well.
    assert_eq!(c.curl(None, "GET", "/healthz", None), (200, "ok\n".to_string()));
}
