//! The agent's figures in the same run: `bench-agent` (the binary beside this one) run on the stripped
//! agent, its table carried into this one's report as it printed it.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The agent's table as `bench-agent` printed it, and whether every figure met its target.
pub struct AgentFigures {
    pub table: String,
    pub all_met: bool,
}

/// Runs `bench-agent AGENT GIB` from the directory this bench runs from. Its exit status is 0 when every
/// target is met and 1 when one is missed; anything else (a panic, a signal) means it could not measure.
pub fn run(agent: &Path, bind_gib: u32) -> Result<AgentFigures> {
    if !agent.is_file() {
        bail!(
            "no agent at {}: build it with `cargo build --profile release-agent -p bindwave-agent`, or pass \
             --agent PATH",
            agent.display()
        );
    }
    let me = std::env::current_exe().context("find this bench's own path")?;
    let exe = me.with_file_name("bench-agent");
    let out =
        Command::new(&exe).arg(agent).arg(bind_gib.to_string()).output().with_context(|| {
            format!("run {} (build it with `cargo build --release -p bindwave-tests`)", exe.display())
        })?;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => Ok(AgentFigures { table, all_met: true }),
        Some(1) => Ok(AgentFigures { table, all_met: false }),
        _ => bail!(
            "{} ended with {}: {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ),
    }
}
