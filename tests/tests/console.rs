//! The web console in a real browser: Debian's Chromium driven by playwright-core (`tests/console/`), against
//! `bindwave demo`'s controller and simulated fleet, with an operator's and a viewer's token. The browser's
//! checks are in `tests/console/console.test.mjs`; the screenshots they take go to
//! `target/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use bindwave_tests::demo::Demo;
use bindwave_tests::{free_port, run};

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("console")
}

/// Where the screenshots go: beside the test binaries, under the build directory.
fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/console-<hash>
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("console-screenshots"))
        .unwrap_or_else(|| PathBuf::from("console-screenshots"))
}

#[test]
fn the_console_in_a_real_browser() {
    let node_modules = console_dir().join("node_modules").join("playwright-core");
    assert!(
        node_modules.exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/console` (.ci/run does), and install Debian's \
         chromium (`apt-get install -y chromium`)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is not installed: `apt-get install -y chromium`"
    );
    let dir = tempfile::tempdir().unwrap();
    // A Prometheus nobody answers at: an analysis gate's measurement has no answer (the console shows it).
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let mut demo = Demo::start_with(dir.path(), free_port(), &["--prometheus-url", &nobody]);
    demo.wait_done();
    let operator = demo.cli(&["token", "create", "--name", "olga", "--role", "operator"]).trim().to_string();
    let viewer = demo.cli(&["token", "create", "--name", "victor", "--role", "viewer"]).trim().to_string();
    assert!(operator.starts_with("bw_") && viewer.starts_with("bw_"));
    let shots = screenshots();
    let out = run(Command::new("node")
        .current_dir(console_dir())
        .args(["--test", "--test-reporter=spec", "console.test.mjs"])
        .env("BINDWAVE_URL", &demo.http)
        .env("BINDWAVE_OPERATOR_TOKEN", &operator)
        .env("BINDWAVE_VIEWER_TOKEN", &viewer)
        .env("BINDWAVE_SCREENSHOTS", &shots)
        .env("NODE_EXTRA_CA_CERTS", demo.ca()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the browser tests failed:\n{text}\ncontroller log:\n{}", demo.proc.log_text());
    assert!(shots.join("rollout-gate-tripped.png").exists());
}
