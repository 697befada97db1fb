//! One device's job in a rollout: its phase, its outcome, and counts of outcomes.

use std::collections::BTreeMap;

use bindwave_proto::wire::{DeviceId, JobState, Reason};
use bindwave_proto::SoftwareVersion;
use serde::{Deserialize, Serialize};

use super::{JobId, Millis, RolloutId};

/// Where one device's job stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

    /// The reason the device gave, for a rejected or failed job.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            JobPhase::Rejected { reason, .. } | JobPhase::Failed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Commanded and not finished: the device owes an outcome.
    pub fn in_flight(&self) -> bool {
        matches!(self, JobPhase::Sent | JobPhase::Running { .. })
    }

    /// How summaries group a job.
    pub fn outcome(&self) -> Outcome {
        match self {
            JobPhase::Pending => Outcome::Pending,
            JobPhase::Running { state: JobState::Downloaded, .. } => Outcome::Downloaded,
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
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    Pending,
    InProgress,
    /// Downloaded and verified, waiting for the phone's install window.
    Downloaded,
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
    /// When an in-flight job times out: the wave's device timeout after its command, or, once downloaded
    /// and waiting for its install window, after the window opens. `None` for a job not in flight.
    pub deadline: Option<Millis>,
    /// A cancel was sent: the device answers `cancelled`, or with its true outcome if its install had begun.
    pub cancelling: bool,
}

impl Job {
    /// The current attempt's job id.
    pub fn id(&self) -> JobId {
        JobId::new(self.rollout, self.device.clone(), self.attempt)
    }
}

/// Counts per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally([usize; 9]);

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
    /// Devices without an outcome yet: waiting for their command, working on it, or downloaded and waiting for
    /// their install window.
    pub fn open(&self) -> usize {
        self.get(Outcome::Pending) + self.in_flight()
    }
    /// Commanded devices without an outcome yet.
    pub fn in_flight(&self) -> usize {
        self.get(Outcome::InProgress) + self.get(Outcome::Downloaded)
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

/// Devices without an outcome yet among `counts`: pending, in progress, or downloaded and waiting.
pub fn open_in(counts: &Counts) -> usize {
    [Outcome::Pending, Outcome::InProgress, Outcome::Downloaded].iter().map(|o| counts.get(o).unwrap_or(&0)).sum()
}
