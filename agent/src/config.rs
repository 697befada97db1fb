//! The agent's configuration file.
//!
//! ```toml
//! device_id = "phone-0001"
//! part_number = "S30817-S7701-A101"
//! software_version = "V3 R3.11.0"          # the factory version; the installed one takes over after an update
//! minimum_software_version = "V3 R1.0.0"   # binds without a hardware-level field must be at least this
//! state_dir = "/var/lib/bindwave-agent"
//! # hardware_level = 3                     # a fixed level; otherwise it comes from the part number table
//! # model = "CP400"                        # reported in hello, for targeting
//! # labels = ["site=munich", "pilot"]      # reported in hello, for targeting
//!
//! [broker]
//! url = "mqtt://127.0.0.1:1883"
//!
//! [hardware_levels]                        # part number -> hardware level
//! "S30817-S7701-A101" = 3
//!
//! [download]                               # optional: retries of a failing download, each resuming
//! attempts = 10
//! backoff_ms = 500
//! max_backoff_secs = 30
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bindwave_proto::wire::{DeviceId, LevelSource};
use bindwave_proto::{DeviceProfile, HardwareLevel, SoftwareVersion};
use serde::{Deserialize, Serialize};

use crate::AgentError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub device_id: DeviceId,
    pub part_number: String,
    /// The software the phone shipped with; after an install the slot record says what runs.
    pub software_version: SoftwareVersion,
    pub minimum_software_version: SoftwareVersion,
    /// A fixed hardware level. When set it wins over the part-number table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_level: Option<HardwareLevel>,
    /// Part number -> hardware level.
    #[serde(default)]
    pub hardware_levels: BTreeMap<String, HardwareLevel>,
    /// The phone model, reported in hello for targeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Labels reported in hello for targeting, e.g. `["site=munich", "pilot"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    pub state_dir: PathBuf,
    pub broker: BrokerSettings,
    /// Seconds between repeats of a final report the controller has not acknowledged yet.
    #[serde(default = "default_report_retry_secs")]
    pub report_retry_secs: u64,
    /// How hard a download tries before the job fails.
    #[serde(default)]
    pub download: DownloadSettings,
}

/// `[download]`: retries of an interrupted or failing download (each resumes where the last stopped).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadSettings {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first pause between attempts, in milliseconds; it doubles each time, with jitter.
    pub backoff_ms: u64,
    /// The longest pause between attempts, in seconds.
    pub max_backoff_secs: u64,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        DownloadSettings { attempts: 10, backoff_ms: 500, max_backoff_secs: 30 }
    }
}

impl DownloadSettings {
    pub fn policy(&self) -> crate::fetch::RetryPolicy {
        crate::fetch::RetryPolicy {
            attempts: self.attempts.max(1),
            backoff: std::time::Duration::from_millis(self.backoff_ms),
            max_backoff: std::time::Duration::from_secs(self.max_backoff_secs),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// `mqtt://host:port`
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn default_report_retry_secs() -> u64 {
    10
}

/// What the phone knows about itself, resolved from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub hardware_level: HardwareLevel,
    pub source: LevelSource,
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AgentError::ConfigRead { path: path.into(), source })?;
        let config: AgentConfig =
            toml::from_str(&text).map_err(|e| AgentError::ConfigParse { path: path.into(), detail: e.to_string() })?;
        config.identity()?;
        crate::link::parse_broker_url(&config.broker.url)?;
        Ok(config)
    }

    /// The phone's hardware level and where it came from: the fixed level if set, else the part number.
    pub fn identity(&self) -> Result<Identity, AgentError> {
        if let Some(level) = self.hardware_level {
            return Ok(Identity { hardware_level: level, source: LevelSource::Configured });
        }
        match self.hardware_levels.get(&self.part_number) {
            Some(&level) => Ok(Identity { hardware_level: level, source: LevelSource::PartNumber }),
            None => Err(AgentError::ConfigInvalid(format!(
                "no hardware level for part number {:?}: add it to [hardware_levels] or set hardware_level",
                self.part_number
            ))),
        }
    }

    pub fn profile(&self, identity: &Identity) -> DeviceProfile {
        DeviceProfile {
            hardware_level: identity.hardware_level,
            minimum_software_version: self.minimum_software_version.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<AgentConfig, toml::de::Error> {
        toml::from_str(&format!(
            r#"
            device_id = "phone-1"
            part_number = "P1"
            software_version = "V3 R3.0.0"
            minimum_software_version = "V3 R1.0.0"
            state_dir = "/tmp/x"
            {extra}
            [broker]
            url = "mqtt://127.0.0.1:1883"
            "#
        ))
    }

    #[test]
    fn level_from_the_part_number_table_or_a_fixed_value() {
        let c = parse("[hardware_levels]\nP1 = 4\n").unwrap();
        assert_eq!(
            c.identity().unwrap(),
            Identity { hardware_level: HardwareLevel(4), source: LevelSource::PartNumber }
        );
        let c = parse("hardware_level = 2").unwrap();
        assert_eq!(
            c.identity().unwrap(),
            Identity { hardware_level: HardwareLevel(2), source: LevelSource::Configured }
        );
    }

    #[test]
    fn unknown_part_number_is_a_clear_error() {
        let c = parse("").unwrap();
        let e = c.identity().unwrap_err().to_string();
        assert!(e.contains("P1") && e.contains("[hardware_levels]"), "{e}");
    }

    #[test]
    fn typos_and_bad_versions_are_refused() {
        assert!(parse("hardware_levle = 2").unwrap_err().to_string().contains("hardware_levle"));
        let e = toml::from_str::<AgentConfig>(
            "device_id='a'\npart_number='p'\nsoftware_version='latest'\nminimum_software_version='1'\nstate_dir='/'\n[broker]\nurl='mqtt://x'",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("latest"), "{e}");
    }
}
