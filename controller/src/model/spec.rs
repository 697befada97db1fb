//! What an operator asks for: which devices a rollout targets, and how they are drawn into waves.

use std::fmt;

use bindwave_proto::wire::DeviceId;
use bindwave_proto::{HardwareLevel, SoftwareVersion};
use serde::{Deserialize, Serialize};

use super::{Device, GateOverrides, Gates, Schedule, ScheduleOverrides};

/// Which devices a rollout targets. Every criterion given must hold; an empty filter is the whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TargetFilter {
    /// Only these devices.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub part_numbers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hardware_levels: Vec<HardwareLevel>,
    /// Devices currently running one of these versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub software_versions: Vec<SoftwareVersion>,
    /// Devices carrying every one of these labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Also take in matching devices that first say hello while the rollout runs (into its last wave).
    pub follow: bool,
}

impl TargetFilter {
    /// Whether a device matches. A device that never said hello matches only an explicit device list with
    /// no other criteria.
    pub fn matches(&self, device: &Device) -> bool {
        if !self.devices.is_empty() && !self.devices.contains(&device.id) {
            return false;
        }
        let Some(h) = &device.hello else {
            return self.part_numbers.is_empty()
                && self.models.is_empty()
                && self.hardware_levels.is_empty()
                && self.software_versions.is_empty()
                && self.labels.is_empty();
        };
        (self.part_numbers.is_empty() || self.part_numbers.iter().any(|p| **p == *h.part_number))
            && (self.models.is_empty() || h.model.as_ref().is_some_and(|m| self.models.iter().any(|x| **x == **m)))
            && (self.hardware_levels.is_empty() || self.hardware_levels.contains(&h.hardware_level))
            && (self.software_versions.is_empty() || self.software_versions.contains(&h.software_version))
            && self.labels.iter().all(|l| h.labels.iter().any(|x| **x == **l))
    }
}

/// How far a wave reaches, counted cumulatively over the rollout's targets: `10%` means "until 10% of the
/// targets have been commanded", `50` means "until 50 devices have".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaveSize {
    Percent(f64),
    Count(usize),
}

impl WaveSize {
    /// The cumulative device count this size reaches among `total` targets (a percentage rounds up, so 1% of
    /// a small fleet is still one device).
    pub fn reach(self, total: usize) -> usize {
        match self {
            WaveSize::Percent(p) => ((p.clamp(0.0, 100.0) / 100.0) * total as f64).ceil() as usize,
            WaveSize::Count(n) => n.min(total),
        }
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Percent(p) => write!(f, "{p}%"),
            WaveSize::Count(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for WaveSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(WaveSize::Percent(100.0));
        }
        if let Some(p) = s.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 100.0 => Ok(WaveSize::Percent(v)),
                _ => Err(format!("wave size {s:?}: a percentage must be above 0% and at most 100%")),
            };
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(WaveSize::Count(n)),
            _ => Err(format!("wave size {s:?}: use a device count (10), a percentage (10%) or \"all\"")),
        }
    }
}

/// One wave as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaveSpec {
    pub size: WaveSize,
    #[serde(default)]
    pub gates: GateOverrides,
    #[serde(default, skip_serializing_if = "is_default")]
    pub schedule: ScheduleOverrides,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// What an operator asks for when creating a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// The image's SHA-256, or a unique prefix of at least 6 characters.
    pub image: String,
    #[serde(default)]
    pub targets: TargetFilter,
    /// Cumulative wave sizes; if the last does not reach every target, the rest form one more wave.
    /// Default: one wave of everything.
    #[serde(default)]
    pub waves: Vec<WaveSpec>,
    #[serde(default)]
    pub gates: Gates,
    /// When commands go and phones install (windows, rate); each wave may override it.
    #[serde(default, skip_serializing_if = "Schedule::is_empty")]
    pub schedule: Schedule,
    /// The time zone of the windows for phones that report none in their hello (an IANA name). Default: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Install even where the phones' compatibility rule says no.
    #[serde(rename = "override", default)]
    pub override_compat: bool,
    /// Why the override, for the audit log: required with `override`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
    /// Commands carry only the bind's file name (`{sha256}.bind`); phones fetch it with their default access
    /// settings (their own FTP/HTTPS server, where the operator has put the bind).
    #[serde(default)]
    pub use_defaults: bool,
    /// Seed for the random draw of wave members; recorded, so a plan can be reproduced. Default: random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}
