//! A rollout and its waves: where it is, and why it stopped.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Gates, ImageId, Millis, RolloutId, Schedule, TargetFilter};

/// One wave of a rollout: its size and the gates it runs under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Wave {
    /// Devices in this wave.
    pub devices: usize,
    pub gates: Gates,
    /// When its commands may go and its phones install.
    #[serde(default, skip_serializing_if = "Schedule::is_empty")]
    pub schedule: Schedule,
    pub started_at: Option<Millis>,
    /// When the wave passed its gates (or was let through by an operator).
    pub passed_at: Option<Millis>,
    pub approved_by: Option<String>,
}

/// Where a wave is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, utoipa::ToSchema)]
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
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumCount,
    strum::EnumDiscriminants,
    utoipa::ToSchema,
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
    /// An analysis failed more measurements than it tolerates.
    AnalysisFailed {
        wave: usize,
        analysis: String,
        query: String,
        /// The value that failed last (the first series that did not meet the condition).
        value: f64,
        condition: String,
        failures: u32,
        limit: u32,
    },
    /// An analysis could not be measured: no data, or Prometheus did not answer. It never passes for want of data.
    AnalysisInconclusive {
        wave: usize,
        analysis: String,
        query: String,
        detail: String,
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
            Cause::AnalysisFailed { wave, analysis, query, value, condition, failures, limit } => write!(
                f,
                "analysis {analysis:?} after wave {} measured {value}, which is not {condition}: {failures} failed \
                 measurement(s), {limit} tolerated (query: {query})",
                wave + 1
            ),
            Cause::AnalysisInconclusive { wave, analysis, query, detail } => write!(
                f,
                "analysis {analysis:?} after wave {} could not be measured: {detail}; the rollout waits for data, \
                 resume it to measure again (query: {query})",
                wave + 1
            ),
        }
    }
}

#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumCount,
    strum::EnumDiscriminants,
    utoipa::ToSchema,
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
    /// Where the rollout stands, in words, for any view (the console; the CLI adds its commands to it).
    pub fn describe(&self, waves: usize) -> String {
        match self {
            RolloutState::Created => "created, not started".into(),
            RolloutState::Active { wave, stage: Stage::AwaitingApproval } => {
                format!("wave {}/{waves} waits for approval", wave + 1)
            }
            RolloutState::Active { wave, stage: Stage::Updating } => format!("wave {}/{waves} updating", wave + 1),
            RolloutState::Active { wave, stage: Stage::Soaking { .. } } => {
                format!("wave {}/{waves} passed its gates; soaking", wave + 1)
            }
            RolloutState::Paused { wave, cause, .. } => format!("paused in wave {}/{waves}: {cause}", wave + 1),
            RolloutState::Aborted { cause } => format!("aborted: {cause}"),
            RolloutState::Finished => "finished: every wave passed".into(),
        }
    }

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The windows' time zone for phones that report none (an IANA name); `None`: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Baseline {
    pub failed: usize,
    pub finished: usize,
    pub rejected: usize,
}
