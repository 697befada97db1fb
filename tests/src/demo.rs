//! `bindwave demo --keep-running` as a test's fleet: a controller with simulated phones and the demo's three
//! rollouts, for the tests that look at a real fleet from outside (the dashboards, the console).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{assert_success, bin, run, wait_until, Proc};

/// `bindwave demo --keep-running`: a controller with 60 simulated phones and three rollouts, over HTTPS with the
/// admin token and development CA it makes in its data directory.
pub struct Demo {
    pub proc: Proc,
    pub http: String,
    /// The controller's data directory: `admin.token`, `tls/ca.pem`.
    pub data_dir: PathBuf,
}

impl Demo {
    /// Starts the demo and waits until its controller serves (and has written its token and CA).
    pub fn start(dir: &Path, port: u16) -> Demo {
        Self::start_with(dir, port, &[])
    }

    /// [`Demo::start`] with more `bindwave demo` flags (`--prometheus-url URL`).
    pub fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Demo {
        let mut cmd = Command::new(bin("bindwave"));
        cmd.args(["demo", "--devices", "60", "--http-listen", &format!("127.0.0.1:{port}"), "--keep-running"]);
        cmd.args(extra);
        let mut proc = Proc::spawn("demo", cmd, dir);
        let mut data = None;
        wait_until(Duration::from_secs(60), "the demo's controller to start (\"controller: ... data DIR\")", || {
            assert!(proc.alive(), "the demo exited at start");
            data = proc.log_text().lines().find_map(|l| {
                let rest = l.strip_prefix("controller: ")?;
                Some(PathBuf::from(rest.rsplit_once("  data ")?.1.trim()))
            });
            data.is_some()
        });
        let data_dir = data.expect("the demo's data directory").join("controller");
        Demo { proc, http: format!("https://127.0.0.1:{port}"), data_dir }
    }

    /// Waits until the rollouts are done and the demo serves on ("still running").
    pub fn wait_done(&mut self) {
        let proc = &mut self.proc;
        wait_until(Duration::from_secs(300), "the demo to finish its rollouts (\"still running\")", || {
            let log = proc.log_text();
            assert!(log.contains("still running") || proc.alive(), "the demo exited before its rollouts ended");
            log.contains("still running")
        });
    }

    /// Runs an operator command against the demo's controller (the CLI finds its token and CA in the data dir);
    /// it must succeed, and its stdout is returned.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = run(Command::new(bin("bindwave"))
            .env("BINDWAVE_DATA_DIR", &self.data_dir)
            .arg("--controller")
            .arg(&self.http)
            .args(args));
        assert_success(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    pub fn ca(&self) -> PathBuf {
        self.data_dir.join("tls").join("ca.pem")
    }

    /// GET over HTTPS with the admin token (curl, trusting the demo's CA): status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let token = std::fs::read_to_string(self.token_file()).expect("the demo's admin token");
        crate::https_get(&format!("{}{path}", self.http), &self.ca(), token.trim())
    }
}
