//! The phone's identity: its hardware level and where it came from. A step with side effects: with a
//! `[hardware_probe]` it runs a program (with a time limit) or reads a file. It runs once, when the config is
//! checked at start; the [`super::Checked`] config carries the identity to the agent.

use std::io::Read as _;
use std::time::{Duration, Instant};

use bindwave_proto::wire::{LevelConflict, LevelSource};
use bindwave_proto::HardwareLevel;

use super::{AgentConfig, ProbeSettings};
use crate::AgentError;

/// How long a probe command may take when `[hardware_probe] timeout_secs` does not say.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the phone knows about itself, resolved from the config and the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub hardware_level: HardwareLevel,
    pub source: LevelSource,
    pub conflict: Option<LevelConflict>,
}

impl ProbeSettings {
    /// Runs the probe; the level is the first number it prints (or the file holds). A command that has not
    /// finished within the time limit is killed.
    pub fn run(&self) -> Result<HardwareLevel, AgentError> {
        let err = |detail: String| AgentError::Probe(detail);
        let text = match (&self.command, &self.file) {
            (Some(cmd), None) => {
                let (program, args) = cmd.split_first().ok_or_else(|| err("hardware_probe.command is empty".into()))?;
                let limit = self.timeout_secs.map_or(DEFAULT_PROBE_TIMEOUT, Duration::from_secs);
                run_with_limit(program, args, limit).map_err(err)?
            }
            (None, Some(file)) => {
                std::fs::read_to_string(file).map_err(|e| err(format!("cannot read {}: {e}", file.display())))?
            }
            _ => return Err(err("set exactly one of hardware_probe.command and hardware_probe.file".into())),
        };
        let t = text.trim();
        t.parse::<u16>()
            .map(HardwareLevel)
            .map_err(|_| err(format!("the probe gave {t:?}, not a hardware level (0-65535)")))
    }
}

/// Runs `program` and returns what it printed, or why not. It is polled, not waited for, so that a program
/// that hangs ends the wait at `limit` (and is killed).
fn run_with_limit(program: &str, args: &[String], limit: Duration) -> Result<String, String> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not answer within {}s", limit.as_secs_f32()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for {program}: {e}")),
        }
    };
    if !status.success() {
        return Err(format!("{program} exited with {status}"));
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).map_err(|e| format!("cannot read what {program} printed: {e}"))?;
    }
    Ok(out)
}

impl AgentConfig {
    /// The hardware level from the configuration alone: the fixed level if set, else the part number.
    fn configured_level(&self) -> Option<(HardwareLevel, LevelSource)> {
        self.hardware_level
            .map(|l| (l, LevelSource::Configured))
            .or_else(|| self.hardware_levels.get(&self.part_number).map(|l| (*l, LevelSource::PartNumber)))
    }

    /// The phone's hardware level and where it came from. The probe, when configured, runs and wins; a
    /// configured level that disagrees with it is reported as a conflict. The checker calls this once at
    /// start ([`super::check`]); the agent gets the result.
    pub fn identity(&self) -> Result<Identity, AgentError> {
        let configured = self.configured_level();
        if let Some(probe) = &self.hardware_probe {
            let level = probe.run()?;
            let conflict = configured.filter(|(l, _)| *l != level).map(|(other, other_source)| LevelConflict {
                probe: level,
                other,
                other_source,
            });
            return Ok(Identity { hardware_level: level, source: LevelSource::Probe, conflict });
        }
        match configured {
            Some((hardware_level, source)) => Ok(Identity { hardware_level, source, conflict: None }),
            None => Err(AgentError::ConfigInvalid(format!(
                "no hardware level for part number {:?}: add it to [hardware_levels], set hardware_level, or \
                 configure [hardware_probe]",
                self.part_number
            ))),
        }
    }
}
