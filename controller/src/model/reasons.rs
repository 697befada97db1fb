//! A rollout's rejections and failures grouped by what the phones said.

use bindwave_proto::wire::DeviceId;
use serde::{Deserialize, Serialize};

use super::Outcome;

/// Devices that gave one answer: the same outcome, reason code and words (which hold the expected and the
/// actual values, e.g. `hardware level 2 is not among [3, 4]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReasonGroup {
    pub outcome: Outcome,
    /// The reason's code (`hardware_level_incompatible`, ...), or `timed_out` for devices that sent no final
    /// report in time.
    pub code: String,
    /// The reason in words, with its values.
    pub text: String,
    /// How many devices.
    pub devices: usize,
    /// The first few of them, by id.
    pub examples: Vec<DeviceId>,
}

/// Devices a group names as examples.
pub const EXAMPLES: usize = 5;
