//! The controller's records: what it stores in sled and shows through the API.

use std::collections::BTreeMap;
use std::fmt;

use bindwave_proto::wire::{DeviceId, Hello, JobState, Reason};
use bindwave_proto::{HardwareLevel, SoftwareVersion};
use serde::{Deserialize, Serialize};

mod ids;
mod job_json;

pub use ids::{ImageId, JobId, RolloutId};

/// Milliseconds since the Unix epoch. The engine never reads a clock: callers pass `now`.
pub type Millis = u64;

/// A device as the controller knows it, from its hello and presence messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    /// The last hello; absent for a device known only from presence or a report.
    pub hello: Option<Hello>,
    pub online: bool,
    pub last_seen: Millis,
}

/// A bind stored by the controller, addressed by the SHA-256 of the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub sha256: ImageId,
    pub size: u64,
    pub software_version: SoftwareVersion,
    /// `None`: the bind has no hardware-level field.
    pub hardware_levels: Option<Vec<HardwareLevel>>,
    pub payload_sha256: String,
    pub payload_len: u64,
    pub added_at: Millis,
}

/// Which devices a rollout targets. Every criterion given must hold; an empty filter is the whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
        (self.part_numbers.is_empty() || self.part_numbers.contains(&h.part_number))
            && (self.models.is_empty() || h.model.as_ref().is_some_and(|m| self.models.contains(m)))
            && (self.hardware_levels.is_empty() || self.hardware_levels.contains(&h.hardware_level))
            && (self.software_versions.is_empty() || self.software_versions.contains(&h.software_version))
            && self.labels.iter().all(|l| h.labels.contains(l))
    }
}

/// How far a wave reaches, counted cumulatively over the rollout's targets: `10%` means "until 10% of the
/// targets have been commanded", `50` means "until 50 devices have".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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

/// What a tripped threshold does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateAction {
    /// Stop commanding devices until an operator resumes.
    Pause,
    /// Stop for good: devices not yet commanded are cancelled.
    Abort,
}

/// The rules a wave must pass. Set per rollout; each wave may override any of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gates {
    /// The share of a wave's devices (rejections aside) that must succeed before the next wave starts;
    /// below it the rollout pauses for an operator.
    pub success_ratio: f64,
    /// Failures (failed or timed out) over finished devices (rejections aside), across the waves so far,
    /// above which `on_failure` happens...
    pub failure_ratio: f64,
    /// ...once at least this many devices have finished.
    pub failure_min_finished: usize,
    pub on_failure: GateAction,
    /// Like the failure threshold, for hardware- and software-level rejections. `None`: rejections are
    /// reported and never stop the rollout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_ratio: Option<f64>,
    pub rejection_min_finished: usize,
    pub on_rejection: GateAction,
    /// Seconds to wait after a wave passes before the next starts (late failures still count).
    pub soak_secs: u64,
    /// Seconds a device has to report a final outcome after its command; then it is `timed_out`.
    pub device_timeout_secs: u64,
    /// The most devices updating at once; `None`: the whole wave at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// An operator must approve the wave before it starts.
    pub approval: bool,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            success_ratio: 0.95,
            failure_ratio: 0.10,
            failure_min_finished: 3,
            on_failure: GateAction::Pause,
            rejection_ratio: None,
            rejection_min_finished: 10,
            on_rejection: GateAction::Pause,
            soak_secs: 0,
            device_timeout_secs: 30 * 60,
            max_concurrent: None,
            approval: false,
        }
    }
}

/// Per-wave overrides of [`Gates`]; every field left out keeps the rollout's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_min_finished: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<GateAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_min_finished: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_rejection: Option<GateAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_timeout_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<bool>,
}

impl Gates {
    pub fn with(&self, o: &GateOverrides) -> Gates {
        Gates {
            success_ratio: o.success_ratio.unwrap_or(self.success_ratio),
            failure_ratio: o.failure_ratio.unwrap_or(self.failure_ratio),
            failure_min_finished: o.failure_min_finished.unwrap_or(self.failure_min_finished),
            on_failure: o.on_failure.unwrap_or(self.on_failure),
            rejection_ratio: o.rejection_ratio.or(self.rejection_ratio),
            rejection_min_finished: o.rejection_min_finished.unwrap_or(self.rejection_min_finished),
            on_rejection: o.on_rejection.unwrap_or(self.on_rejection),
            soak_secs: o.soak_secs.unwrap_or(self.soak_secs),
            device_timeout_secs: o.device_timeout_secs.unwrap_or(self.device_timeout_secs),
            max_concurrent: o.max_concurrent.or(self.max_concurrent),
            approval: o.approval.unwrap_or(self.approval),
        }
    }

    /// Checks the values make sense; the message names the gate.
    pub fn validate(&self) -> Result<(), String> {
        let ratio = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be between 0 and 1 (or 0% and 100%), not {v}"))
            }
        };
        ratio("success_ratio", self.success_ratio)?;
        ratio("failure_ratio", self.failure_ratio)?;
        if let Some(r) = self.rejection_ratio {
            ratio("rejection_ratio", r)?;
        }
        if self.device_timeout_secs == 0 {
            return Err("device_timeout_secs must be at least 1".into());
        }
        if self.max_concurrent == Some(0) {
            return Err("max_concurrent must be at least 1".into());
        }
        Ok(())
    }
}

/// One wave as planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveSpec {
    pub size: WaveSize,
    #[serde(default)]
    pub gates: GateOverrides,
}

/// What an operator asks for when creating a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Install even where the phones' compatibility rule says no.
    #[serde(rename = "override", default)]
    pub override_compat: bool,
    /// Commands carry only the bind's file name (`{sha256}.bind`); phones fetch it with their default access
    /// settings (their own FTP/HTTPS server, where the operator has put the bind).
    #[serde(default)]
    pub use_defaults: bool,
    /// Seed for the random draw of wave members; recorded, so a plan can be reproduced. Default: random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// One wave of a rollout: its size and the gates it runs under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wave {
    /// Devices in this wave.
    pub devices: usize,
    pub gates: Gates,
    pub started_at: Option<Millis>,
    /// When the wave passed its gates (or was let through by an operator).
    pub passed_at: Option<Millis>,
    pub approved_by: Option<String>,
}

/// Where a wave is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "stage", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Stage {
    /// Waiting for an operator's approval before the first command.
    AwaitingApproval,
    /// Commanding devices and collecting outcomes.
    Updating,
    /// The wave passed; waiting until `until` before the next starts.
    Soaking { until: Millis },
}

/// Why a rollout stopped (for now, or for good).
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumCount, strum::EnumDiscriminants,
)]
#[serde(tag = "cause", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[strum_discriminants(name(CauseKind), derive(strum::IntoStaticStr, strum::VariantArray))]
#[strum_discriminants(strum(serialize_all = "snake_case"))]
pub enum Cause {
    Operator {
        actor: String,
        reason: String,
    },
    EmergencyStop {
        actor: String,
        reason: String,
    },
    /// The wave finished below its success ratio.
    SuccessGate {
        wave: usize,
        succeeded: usize,
        eligible: usize,
        required: f64,
    },
    FailureThreshold {
        failed: usize,
        finished: usize,
        threshold: f64,
    },
    RejectionThreshold {
        rejected: usize,
        finished: usize,
        threshold: f64,
    },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Operator { actor, reason } => write!(f, "by {actor}: {reason}"),
            Cause::EmergencyStop { actor, reason } => write!(f, "emergency stop by {actor}: {reason}"),
            Cause::SuccessGate { wave, succeeded, eligible, required } => write!(
                f,
                "wave {} succeeded on {succeeded} of {eligible} devices, below the required {:.0}%",
                wave + 1,
                required * 100.0
            ),
            Cause::FailureThreshold { failed, finished, threshold } => write!(
                f,
                "{failed} of {finished} finished devices failed, above the {:.0}% failure threshold",
                threshold * 100.0
            ),
            Cause::RejectionThreshold { rejected, finished, threshold } => write!(
                f,
                "{rejected} of {finished} devices rejected the image, above the {:.0}% rejection threshold",
                threshold * 100.0
            ),
        }
    }
}

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumCount, strum::EnumDiscriminants,
)]
#[serde(tag = "state", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[strum_discriminants(name(RolloutStateKind), derive(strum::IntoStaticStr, strum::VariantArray))]
#[strum_discriminants(strum(serialize_all = "snake_case"))]
pub enum RolloutState {
    /// Created; nothing sent yet.
    Created,
    /// Wave `wave` (0-based) is in `stage`.
    Active {
        wave: usize,
        #[serde(flatten)]
        stage: Stage,
    },
    /// Stopped in wave `wave` until resumed; `stage` is where it resumes.
    Paused {
        wave: usize,
        #[serde(flatten)]
        stage: Stage,
        cause: Cause,
    },
    /// Stopped for good; devices not commanded were cancelled.
    Aborted { cause: Cause },
    /// Every wave passed.
    Finished,
}

impl RolloutState {
    /// The state's name, as in its JSON (`active`, `paused`, ...).
    pub fn name(&self) -> &'static str {
        self.into()
    }

    /// The wave in progress, if any.
    pub fn wave(&self) -> Option<usize> {
        match self {
            RolloutState::Active { wave, .. } | RolloutState::Paused { wave, .. } => Some(*wave),
            _ => None,
        }
    }

    pub fn is_over(&self) -> bool {
        matches!(self, RolloutState::Aborted { .. } | RolloutState::Finished)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: RolloutId,
    /// The image's SHA-256.
    pub image: ImageId,
    pub targets: TargetFilter,
    pub waves: Vec<Wave>,
    /// The seed the wave members were drawn with.
    pub seed: u64,
    /// Install even where the compatibility rule says no.
    #[serde(rename = "override")]
    pub override_compat: bool,
    /// Commands carry only the file name, for the phones' default access settings.
    #[serde(default)]
    pub use_defaults: bool,
    #[serde(flatten)]
    pub state: RolloutState,
    /// Counts when an operator last resumed: the thresholds count only what happened after.
    #[serde(default)]
    pub baseline: Baseline,
    pub created_by: String,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
}

/// Threshold counts at the last resume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub failed: usize,
    pub finished: usize,
    pub rejected: usize,
}

/// Where one device's job stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum JobPhase {
    /// Not commanded yet.
    Pending,
    /// Commanded; no report yet.
    Sent,
    /// The device reported progress.
    Running {
        state: JobState,
        progress: Option<u8>,
    },
    /// Installed and running the new version.
    Succeeded {
        running_version: SoftwareVersion,
        override_used: bool,
    },
    /// The bind is not for this device; it still runs `running_version`.
    Rejected {
        reason: Reason,
        running_version: Option<SoftwareVersion>,
    },
    Failed {
        reason: Reason,
        running_version: Option<SoftwareVersion>,
    },
    /// No final report within the wave's device timeout. A later final report replaces this.
    TimedOut,
    /// Never commanded: the rollout was aborted first.
    Cancelled,
}

impl JobPhase {
    /// An outcome the gates count. A `timed_out` job may still be corrected by a late report.
    pub fn is_final(&self) -> bool {
        !matches!(self, JobPhase::Pending | JobPhase::Sent | JobPhase::Running { .. })
    }

    /// Commanded and not finished: the device owes an outcome.
    pub fn in_flight(&self) -> bool {
        matches!(self, JobPhase::Sent | JobPhase::Running { .. })
    }

    /// How summaries group a job.
    pub fn outcome(&self) -> Outcome {
        match self {
            JobPhase::Pending => Outcome::Pending,
            JobPhase::Sent | JobPhase::Running { .. } => Outcome::InProgress,
            JobPhase::Succeeded { .. } => Outcome::Succeeded,
            JobPhase::Rejected { reason: Reason::HardwareLevelIncompatible { .. }, .. } => Outcome::RejectedHardware,
            JobPhase::Rejected { reason: Reason::SoftwareLevelBelowMinimum { .. }, .. } => Outcome::RejectedSoftware,
            JobPhase::Rejected { .. } | JobPhase::Failed { .. } => Outcome::Failed,
            JobPhase::TimedOut => Outcome::TimedOut,
            JobPhase::Cancelled => Outcome::Cancelled,
        }
    }
}

/// The columns of a rollout summary.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    Pending,
    InProgress,
    Succeeded,
    RejectedHardware,
    RejectedSoftware,
    Failed,
    TimedOut,
    Cancelled,
}

impl Outcome {
    /// Every outcome, in the order of a summary's columns.
    pub const ALL: &'static [Outcome] = <Outcome as strum::VariantArray>::VARIANTS;

    /// The outcome's name, as in the API's JSON and the metrics' labels.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One device's part in a rollout. Its JSON also carries `id`, the current attempt's [`JobId`] (a retry gets
/// a new one), derived from the rollout, the device and the attempt (see `job_json.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub rollout: RolloutId,
    pub device: DeviceId,
    /// The wave (0-based) the device belongs to.
    pub wave: usize,
    /// The device's place in the rollout's plan: the dispatch order within its wave.
    pub order: u32,
    pub attempt: u32,
    pub phase: JobPhase,
    pub sent_at: Option<Millis>,
    pub updated_at: Millis,
}

impl Job {
    /// The current attempt's job id.
    pub fn id(&self) -> JobId {
        JobId::new(self.rollout, self.device.clone(), self.attempt)
    }
}

/// Counts per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally([usize; 8]);

impl Tally {
    pub fn add(&mut self, o: Outcome) {
        self.0[o.index()] += 1;
    }
    pub fn remove(&mut self, o: Outcome) {
        self.0[o.index()] = self.0[o.index()].saturating_sub(1);
    }
    pub fn get(&self, o: Outcome) -> usize {
        self.0[o.index()]
    }
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }
    pub fn rejected(&self) -> usize {
        self.get(Outcome::RejectedHardware) + self.get(Outcome::RejectedSoftware)
    }
    /// Failures as the failure threshold counts them.
    pub fn failed(&self) -> usize {
        self.get(Outcome::Failed) + self.get(Outcome::TimedOut)
    }
    /// Devices with an outcome that counts for the failure threshold: succeeded, failed or timed out.
    pub fn finished(&self) -> usize {
        self.get(Outcome::Succeeded) + self.failed()
    }
    /// Devices with any outcome.
    pub fn done(&self) -> usize {
        self.finished() + self.rejected() + self.get(Outcome::Cancelled)
    }
    pub fn open(&self) -> usize {
        self.get(Outcome::Pending) + self.get(Outcome::InProgress)
    }
    pub fn merge(&mut self, other: &Tally) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
    pub fn to_map(self) -> Counts {
        Outcome::ALL.iter().map(|o| (*o, self.get(*o))).collect()
    }
}

/// Counts per outcome, as the API shows them.
pub type Counts = BTreeMap<Outcome, usize>;

/// One line of the audit log: who did what, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Millis,
    /// The operator, or `bindwave` for what the gates did on their own.
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutId>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindwave_proto::wire::{DeviceId, Hello};
    use serde_json::json;

    /// The names in metrics' labels, the audit log and the CLI are the JSON's names: both come from the
    /// variant names by the same `snake_case` rule, and this holds them together.
    #[test]
    fn enum_names_are_the_json_names() {
        use strum::EnumCount;
        let json = |v: serde_json::Value, tag: &str| v.get(tag).cloned().unwrap_or(v).as_str().unwrap().to_string();
        for o in Outcome::ALL {
            assert_eq!(o.as_str(), json(serde_json::to_value(o).unwrap(), ""));
        }
        for a in crate::engine::Action::ALL {
            assert_eq!(a.as_str(), json(serde_json::to_value(a).unwrap(), ""));
        }
        let who = || ("a".to_string(), "r".to_string());
        let causes = [
            Cause::Operator { actor: who().0, reason: who().1 },
            Cause::EmergencyStop { actor: who().0, reason: who().1 },
            Cause::SuccessGate { wave: 0, succeeded: 0, eligible: 1, required: 1.0 },
            Cause::FailureThreshold { failed: 1, finished: 1, threshold: 0.1 },
            Cause::RejectionThreshold { rejected: 1, finished: 1, threshold: 0.1 },
        ];
        assert_eq!(causes.len(), Cause::COUNT, "a cause is missing here");
        for c in &causes {
            let name: &'static str = c.into();
            assert_eq!(name, json(serde_json::to_value(c).unwrap(), "cause"));
        }
        for stage in [Stage::AwaitingApproval, Stage::Updating, Stage::Soaking { until: 1 }] {
            let name: &'static str = stage.into();
            assert_eq!(name, json(serde_json::to_value(stage).unwrap(), "stage"));
        }
        let cause = causes[0].clone();
        let states = [
            RolloutState::Created,
            RolloutState::Active { wave: 0, stage: Stage::Updating },
            RolloutState::Paused { wave: 0, stage: Stage::Updating, cause: cause.clone() },
            RolloutState::Aborted { cause },
            RolloutState::Finished,
        ];
        assert_eq!(states.len(), RolloutState::COUNT, "a state is missing here");
        for s in &states {
            assert_eq!(s.name(), json(serde_json::to_value(s).unwrap(), "state"));
            let kind: &'static str = RolloutStateKind::from(s).into();
            assert_eq!(kind, s.name());
        }
        for c in &causes {
            let (kind, name): (&'static str, &'static str) = (CauseKind::from(c).into(), c.into());
            assert_eq!(kind, name);
        }
    }

    /// Golden JSON of a rollout's state, as the API shows it and the store keeps it.
    #[test]
    fn rollout_state_json() {
        let cases = [
            (RolloutState::Created, json!({"state": "created"})),
            (
                RolloutState::Active { wave: 1, stage: Stage::Soaking { until: 5 } },
                json!({"state": "active", "wave": 1, "stage": "soaking", "until": 5}),
            ),
            (
                RolloutState::Paused {
                    wave: 0,
                    stage: Stage::Updating,
                    cause: Cause::Operator { actor: "a".into(), reason: "r".into() },
                },
                json!({"state": "paused", "wave": 0, "stage": "updating", "cause": {"cause": "operator", "actor": "a", "reason": "r"}}),
            ),
        ];
        for (state, golden) in cases {
            assert_eq!(serde_json::to_value(&state).unwrap(), golden);
            assert_eq!(serde_json::from_value::<RolloutState>(golden).unwrap(), state);
        }
    }

    #[test]
    fn target_filters() {
        use bindwave_proto::wire::LevelSource;
        let device = |id: &str, part: &str, level: u16, version: &str, model: Option<&str>, labels: &[&str]| Device {
            id: DeviceId::new(id).unwrap(),
            hello: Some(Hello {
                device_id: DeviceId::new(id).unwrap(),
                part_number: part.into(),
                hardware_level: HardwareLevel(level),
                hardware_level_source: LevelSource::PartNumber,
                hardware_level_conflict: None,
                software_version: version.parse().unwrap(),
                minimum_software_version: "1.0".parse().unwrap(),
                agent_version: "t".into(),
                model: model.map(Into::into),
                labels: labels.iter().map(|l| l.to_string()).collect(),
            }),
            online: true,
            last_seen: 0,
        };
        let a = device("a", "P1", 3, "V3 R1.0.0", Some("CP400"), &["site=munich", "pilot"]);
        let b = device("b", "P2", 4, "V3 R2.0.0", None, &["site=vienna"]);
        let silent = Device { id: DeviceId::new("c").unwrap(), hello: None, online: false, last_seen: 0 };
        let all = TargetFilter::default();
        assert!(all.matches(&a) && all.matches(&b) && all.matches(&silent));
        let f = |f: TargetFilter| {
            [&a, &b, &silent].iter().filter(|d| f.matches(d)).map(|d| d.id.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(f(TargetFilter { part_numbers: vec!["P2".into()], ..Default::default() }), ["b"]);
        assert_eq!(f(TargetFilter { models: vec!["CP400".into()], ..Default::default() }), ["a"]);
        assert_eq!(
            f(TargetFilter { hardware_levels: vec![HardwareLevel(3), HardwareLevel(4)], ..Default::default() }),
            ["a", "b"]
        );
        assert_eq!(f(TargetFilter { software_versions: vec!["3.2".parse().unwrap()], ..Default::default() }), ["b"]);
        assert_eq!(f(TargetFilter { labels: vec!["site=munich".into(), "pilot".into()], ..Default::default() }), ["a"]);
        assert_eq!(
            f(TargetFilter { labels: vec!["site=munich".into(), "other".into()], ..Default::default() }),
            Vec::<String>::new()
        );
        let list = TargetFilter {
            devices: vec![DeviceId::new("c").unwrap(), DeviceId::new("b").unwrap()],
            ..Default::default()
        };
        assert_eq!(f(list.clone()), ["b", "c"]);
        assert_eq!(f(TargetFilter { hardware_levels: vec![HardwareLevel(4)], ..list }), ["b"], "criteria combine");
    }

    #[test]
    fn wave_sizes() {
        assert_eq!("1%".parse::<WaveSize>().unwrap().reach(50), 1);
        assert_eq!("10%".parse::<WaveSize>().unwrap().reach(15), 2);
        assert_eq!("all".parse::<WaveSize>().unwrap().reach(7), 7);
        assert_eq!("20".parse::<WaveSize>().unwrap().reach(7), 7);
        for bad in ["0", "0%", "101%", "-1", "x", ""] {
            assert!(bad.parse::<WaveSize>().is_err(), "{bad}");
        }
    }
}
