//! The dashboards ask only for metrics the controller exports.

use std::collections::BTreeSet;

use bindwave_tests::{http_get, Controller};

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("bindwave_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_in_the_dashboards_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let c = Controller::start(dir.path());
    let (status, body) = http_get(&c.http, "/metrics").unwrap();
    assert_eq!(status, 200);
    let exported: BTreeSet<String> = body
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(str::to_string)
        .collect();
    let dashboards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dashboards).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for name in metric_names(&text) {
                // Per-rollout series appear once a rollout exists.
                let known = exported.contains(&name) || name == "bindwave_rollout_jobs";
                assert!(known, "{} uses {name}, which the controller does not export:\n{body}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked > 5, "no metrics found in the dashboards");
}
