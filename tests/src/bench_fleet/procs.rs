//! The processes a run starts (each killed when dropped, with its output in a log file), and what `/proc`
//! says about their CPU time and memory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bindwave_tests::Proc;

/// Clock ticks per second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on every Linux the bench runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// Starts `cmd` with its output in `dir/NAME.log`, and the environment a user's shell gives it: no `RUST_LOG`
/// from the bench's own environment, so each program logs at its own default level.
pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Result<Proc> {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone().context("duplicate a log file handle")?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err).env_remove("RUST_LOG");
    let child = cmd.spawn().with_context(|| format!("start {name} ({cmd:?})"))?;
    Ok(Proc { name: name.to_string(), child, log })
}

/// Waits until `proc`'s log has a line that `find` accepts, and returns what it made of it.
pub fn wait_for_line<T>(proc: &mut Proc, limit: Duration, what: &str, find: impl Fn(&str) -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(t) = proc.log_text().lines().find_map(&find) {
            return Ok(t);
        }
        if !proc.alive() {
            bail!("{} exited before {what}; its log {}:\n{}", proc.name, proc.log.display(), tail(&proc.log_text()));
        }
        if start.elapsed() > limit {
            bail!("{} did not report {what} within {limit:?}; its log: {}", proc.name, proc.log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines of a log, for an error message.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Polls `f` every `every` until it holds; fails with `what` after `limit`.
pub fn wait(limit: Duration, every: Duration, what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    while !f()? {
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
    Ok(())
}

/// The built binary `name` next to this one (`target/release/`).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("find the bench's own executable")?;
    let path = exe.parent().map(|d| d.join(name)).context("the bench's directory")?;
    if !path.exists() {
        bail!("{} is not built: run bench/fleet.sh, which builds it in release mode", path.display());
    }
    Ok(path)
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: the fields after it are counted from its end.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / TICKS_PER_SEC
}

/// The hard limit of open files per process (`ulimit -Hn`), which bounds the phones one process can hold.
pub fn open_files_hard_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// CPU time a process spends over a span: read it before and after.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    pid: u32,
    at: f64,
}

impl CpuMark {
    pub fn now(pid: u32) -> CpuMark {
        CpuMark { pid, at: cpu_seconds(pid) }
    }

    /// CPU seconds since the mark.
    pub fn spent(&self) -> f64 {
        cpu_seconds(self.pid) - self.at
    }
}

/// Waits until a process is idle: under `share` of one core over each of `windows` consecutive 100 ms windows.
/// Returns when it became idle (the start of the quiet windows).
pub fn wait_idle(pid: u32, share: f64, windows: u32, limit: Duration) -> Result<Instant> {
    let window = Duration::from_millis(100);
    let start = Instant::now();
    let (mut quiet, mut since) = (0, Instant::now());
    let mut last = cpu_seconds(pid);
    while start.elapsed() < limit {
        let began = Instant::now();
        std::thread::sleep(window);
        let now = cpu_seconds(pid);
        if now - last < share * window.as_secs_f64() {
            if quiet == 0 {
                since = began;
            }
            quiet += 1;
            if quiet >= windows {
                return Ok(since);
            }
        } else {
            quiet = 0;
        }
        last = now;
    }
    bail!("process {pid} was still busy after {limit:?}")
}
