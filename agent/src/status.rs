//! `bindwave-agent status`: what a technician at the phone needs to know, read from the state directory.

use std::fmt::Write as _;

use bindwave_proto::wire::{LevelConflict, LevelSource, Report, UpdateCommand};
use bindwave_proto::{HardwareLevel, SoftwareVersion};
use serde::Serialize;

use crate::config::Identity;
use crate::indicator::Status;
use crate::journal::Journal;
use crate::slots::{Active, Slots};
use crate::{AgentConfig, AgentError};

#[derive(Debug, Serialize)]
pub struct AgentStatus {
    pub device_id: String,
    pub hardware_level: HardwareLevel,
    pub hardware_level_source: LevelSource,
    pub hardware_level_conflict: Option<LevelConflict>,
    pub running_version: SoftwareVersion,
    pub minimum_software_version: SoftwareVersion,
    pub active_slot: Option<Active>,
    pub state: Option<Status>,
    pub job_in_hand: Option<UpdateCommand>,
    pub unacknowledged_reports: usize,
    pub last_outcome: Option<Report>,
    /// Commands refused since the agent started, by reason: forged, altered, for another phone, expired.
    pub commands_refused: crate::core::trust::RefusedCounts,
}

/// The status of the phone with this config and the identity resolved when it was checked.
pub fn read(config: &AgentConfig, identity: &Identity) -> Result<AgentStatus, AgentError> {
    let slots = Slots::open(&config.state_dir, crate::storage::Durability::Full)?;
    let journal = Journal::open(&config.state_dir, crate::storage::Durability::Full)?;
    let state: Option<Status> =
        std::fs::read(config.state_dir.join("status.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let commands_refused = state.as_ref().map(|s| s.commands_refused.clone()).unwrap_or_default();
    Ok(AgentStatus {
        device_id: config.device_id.to_string(),
        hardware_level: identity.hardware_level,
        hardware_level_source: identity.source,
        hardware_level_conflict: identity.conflict,
        running_version: slots.running_version(&config.software_version)?,
        minimum_software_version: config.minimum_for(identity.hardware_level).clone(),
        active_slot: slots.active()?,
        state,
        job_in_hand: journal.current().cloned(),
        unacknowledged_reports: journal.unacked().len(),
        last_outcome: journal.last().cloned(),
        commands_refused,
    })
}

impl AgentStatus {
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "device            {}", self.device_id);
        let _ =
            write!(out, "hardware level    {} (from the {})", self.hardware_level, self.hardware_level_source.as_str());
        if let Some(c) = &self.hardware_level_conflict {
            let _ = write!(out, "  CONFLICT: the {} says {}", c.other_source.as_str(), c.other);
        }
        let _ = writeln!(out);
        let slot =
            self.active_slot.as_ref().map_or("factory".to_string(), |a| format!("slot {:?}", a.slot).to_lowercase());
        let _ = writeln!(out, "running           {} ({slot})", self.running_version);
        let _ = writeln!(out, "minimum accepted  {}", self.minimum_software_version);
        match &self.state {
            Some(s) => {
                let _ = write!(out, "state             {}", s.state);
                if let Some(p) = s.progress {
                    let _ = write!(out, " {p}%");
                }
                if let Some(j) = &s.job_id {
                    let _ = write!(out, " (job {j})");
                }
                let _ = writeln!(out);
            }
            None => {
                let _ = writeln!(out, "state             unknown (the agent has not run yet)");
            }
        }
        if let Some(j) = &self.job_in_hand {
            let _ = writeln!(out, "job in hand       {} from {}", j.job_id, j.url);
        }
        if let Some(r) = &self.last_outcome {
            let _ = write!(out, "last outcome      {} {}", r.job_id, r.state);
            if let Some(reason) = &r.reason {
                let _ = write!(out, ": {}: {reason}", reason.code());
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "reports unsent    {}", self.unacknowledged_reports);
        if !self.commands_refused.is_empty() {
            let counts: Vec<String> =
                self.commands_refused.iter().map(|(why, n)| format!("{} {n}", why.as_str())).collect();
            let _ = writeln!(out, "commands refused  {}", counts.join(", "));
        }
        out
    }
}
