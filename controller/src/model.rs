//! The controller's records: what it stores in sled and shows through the API.

use std::collections::BTreeMap;

use bindwave_proto::wire::{DeviceId, Hello, JobState, Reason};
use bindwave_proto::{HardwareLevel, SoftwareVersion};
use serde::{Deserialize, Serialize};

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
    pub sha256: String,
    pub size: u64,
    pub software_version: SoftwareVersion,
    /// `None`: the bind has no hardware-level field.
    pub hardware_levels: Option<Vec<HardwareLevel>>,
    pub payload_sha256: String,
    pub payload_len: u64,
    pub added_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Created, no command sent yet.
    Created,
    /// Commands sent; waiting for outcomes.
    Running,
    /// Every device has a final outcome.
    Finished,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Created => "created",
            RolloutState::Running => "running",
            RolloutState::Finished => "finished",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    /// The image's SHA-256.
    pub image: String,
    pub devices: Vec<DeviceId>,
    /// Install even where the compatibility rule says no.
    #[serde(rename = "override")]
    pub override_compat: bool,
    pub state: RolloutState,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// Where one device's job stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum JobPhase {
    /// Not yet commanded.
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
}

impl JobPhase {
    pub fn is_final(&self) -> bool {
        matches!(self, JobPhase::Succeeded { .. } | JobPhase::Rejected { .. } | JobPhase::Failed { .. })
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
        }
    }
}

/// The columns of a rollout summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pending,
    InProgress,
    Succeeded,
    RejectedHardware,
    RejectedSoftware,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Pending,
        Outcome::InProgress,
        Outcome::Succeeded,
        Outcome::RejectedHardware,
        Outcome::RejectedSoftware,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::InProgress => "in_progress",
            Outcome::Succeeded => "succeeded",
            Outcome::RejectedHardware => "rejected_hardware",
            Outcome::RejectedSoftware => "rejected_software",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub rollout: String,
    pub device: DeviceId,
    pub phase: JobPhase,
    pub sent_at: Option<Millis>,
    pub updated_at: Millis,
}

/// Counts per outcome.
pub type Counts = BTreeMap<Outcome, usize>;
