//! `bindwave serve` in lab mode, as a new user starts it, and the `bindwave` CLI against it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bindwave_tests::Proc;

use super::procs;

/// The version of the bench's bind: above every simulated phone's minimum, with no hardware-level field, so
/// every phone installs it.
pub const BIND_VERSION: &str = "V3 R6.0.0";
/// The bind's payload: 4 KiB.
pub const BIND_PAYLOAD: usize = 4096;

/// Where the controller's MQTT traffic goes.
#[derive(Debug, Clone)]
pub enum Mqtt {
    /// Its embedded broker.
    Embedded,
    /// An external broker at this `mqtt://` URL.
    External(String),
}

pub struct Controller {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub http: String,
    /// `mqtt://127.0.0.1:PORT`, the embedded broker's or the external one.
    pub mqtt: String,
    exe: PathBuf,
    dir: PathBuf,
    data_dir: PathBuf,
    external: bool,
}

impl Controller {
    /// Starts `bindwave serve --insecure-lab --allow-unsigned-images` on free ports, with its store in
    /// `data_dir` and its log in `dir/controller.log`.
    pub fn start(dir: &Path, data_dir: &Path, mqtt: &Mqtt) -> Result<Controller> {
        let exe = procs::sibling("bindwave")?;
        let (http_listen, mqtt_arg) = match mqtt {
            Mqtt::Embedded => ("127.0.0.1:0".to_string(), ["--mqtt-listen".to_string(), "127.0.0.1:0".to_string()]),
            Mqtt::External(url) => ("127.0.0.1:0".to_string(), ["--broker".to_string(), url.clone()]),
        };
        Self::launch(exe, dir, data_dir, &http_listen, &mqtt_arg, matches!(mqtt, Mqtt::External(_)))
    }

    fn launch(
        exe: PathBuf,
        dir: &Path,
        data_dir: &Path,
        http_listen: &str,
        mqtt_arg: &[String; 2],
        external: bool,
    ) -> Result<Controller> {
        let mut cmd = Command::new(&exe);
        cmd.arg("serve").arg("--data-dir").arg(data_dir).args(["--http-listen", http_listen]);
        cmd.args(["--insecure-lab", "--allow-unsigned-images"]).args(mqtt_arg);
        let mut proc = procs::spawn("controller", cmd, dir)?;
        let (http, heard_mqtt) =
            procs::wait_for_line(&mut proc, Duration::from_secs(60), "where it listens", listening)?;
        let mqtt = if external { mqtt_arg[1].clone() } else { heard_mqtt };
        let c =
            Controller { proc, http, mqtt, exe, dir: dir.to_path_buf(), data_dir: data_dir.to_path_buf(), external };
        procs::wait(Duration::from_secs(30), Duration::from_millis(50), "the controller to answer /healthz", || {
            Ok(bindwave_tests::http_get(&c.http, "/healthz").map(|(s, _)| s == 200).unwrap_or(false))
        })?;
        Ok(c)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Starts a stopped controller again on the same ports and store. Returns once it answers.
    pub fn start_again(&mut self) -> Result<()> {
        let http_listen = self.http.trim_start_matches("http://").to_string();
        let mqtt_arg = if self.external {
            ["--broker".to_string(), self.mqtt.clone()]
        } else {
            ["--mqtt-listen".to_string(), self.mqtt.trim_start_matches("mqtt://").to_string()]
        };
        let old = self.dir.join("controller.log");
        let _ = std::fs::rename(&old, self.dir.join("controller.before-restart.log"));
        *self = Self::launch(self.exe.clone(), &self.dir, &self.data_dir, &http_listen, &mqtt_arg, self.external)?;
        Ok(())
    }

    /// Stops it as an operator would, with SIGTERM (it closes its store and its broker), and SIGKILL if it
    /// has not exited within 20 s.
    pub fn stop(&mut self) -> Result<()> {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().context("run kill")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        let waited = procs::wait(Duration::from_secs(20), Duration::from_millis(20), "the controller to stop", || {
            Ok(!self.proc.alive())
        });
        if waited.is_err() {
            self.proc.kill();
        }
        Ok(())
    }

    /// Runs `bindwave --controller <this> ARGS` and returns its stdout; fails with its stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.exe)
            .arg("--controller")
            .arg(&self.http)
            .args(args)
            .env("BINDWAVE_DATA_DIR", &self.data_dir)
            .output()
            .with_context(|| format!("run bindwave {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "bindwave {} failed with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Runs a CLI command with `-o json` and parses what it printed.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.cli(&all)?;
        serde_json::from_str(&text).with_context(|| format!("bindwave {} printed no JSON", args.join(" ")))
    }

    /// Devices the controller knows, and how many of them it shows online.
    pub fn devices(&self) -> Result<(usize, usize)> {
        let list = self.json(&["device", "list"])?;
        let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok((list.len(), list.iter().filter(|d| d["online"] == true).count()))
    }

    /// Waits until the controller knows `n` devices (each has said hello, after subscribing to its commands)
    /// and its count of those online has settled: all of them, or the same for 5 s. Returns how many it
    /// shows online.
    pub fn wait_fleet(&self, n: usize, limit: Duration) -> Result<usize> {
        let every = Duration::from_millis(500);
        let (mut last, mut steady) = ((0, 0), Duration::ZERO);
        procs::wait(limit, every, &format!("{n} devices at the controller"), || {
            let now = self.devices()?;
            steady = if now == last { steady + every } else { Duration::ZERO };
            last = now;
            Ok(now.0 >= n && (now.1 >= n || steady >= Duration::from_secs(5)))
        })
        .with_context(|| format!("the controller knew {} of {n} devices, {} of them online", last.0, last.1))?;
        Ok(last.1)
    }

    /// The sum of a metric's samples (every label set) in `/metrics`, which lab mode serves without a token.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let (status, body) = bindwave_tests::http_get(&self.http, "/metrics").context("GET /metrics")?;
        if status != 200 {
            bail!("GET /metrics answered {status}");
        }
        Ok(body
            .lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum())
    }

    /// Packs a bind with a 4 KiB payload (`bindwave image pack`) and adds it (`bindwave image add`): its
    /// SHA-256.
    pub fn add_bind(&self, dir: &Path) -> Result<String> {
        let payload = dir.join("bench.img");
        let bytes = bindwave_tests::measure::noise(BIND_PAYLOAD);
        std::fs::write(&payload, bytes).with_context(|| format!("write {}", payload.display()))?;
        let bind = dir.join("bench.bind");
        let (p, b) = (payload.to_string_lossy().into_owned(), bind.to_string_lossy().into_owned());
        self.cli(&["image", "pack", &p, "--version", BIND_VERSION, "-o", &b])?;
        self.cli(&["image", "add", &b])
    }
}

/// `bindwave serve` says where it listens once it does: "HTTP on http://ADDR, MQTT on mqtt://ADDR".
fn listening(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("bindwave controller: HTTP on ")?;
    let (http, mqtt) = rest.split_once(", MQTT on ")?;
    Some((http.trim().to_string(), mqtt.trim().to_string()))
}
