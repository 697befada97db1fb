//! A rollout's members as planned: who is in which wave, in dispatch order, written once when it is created.
//!
//! A device waiting for its first command has no job record: its job is implied by its place here, pending
//! while the rollout runs and cancelled once it is aborted. Its record is written when it is first commanded,
//! so creating a rollout over a million devices writes a few hundred records, not a million.

use bindwave_proto::wire::DeviceId;
use serde::{Deserialize, Serialize};

use super::RolloutId;

/// Devices in one record of [`Members`]: a record's JSON stays near 64 KiB.
pub const MEMBERS_PER_RECORD: usize = 4_096;

/// Consecutive members of one wave of a rollout, in plan order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Members {
    pub rollout: RolloutId,
    /// The wave (0-based).
    pub wave: usize,
    /// The plan order of the first device; each next one is one more.
    pub first: u32,
    pub devices: Vec<DeviceId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden JSON of a members record, as the store keeps it.
    #[test]
    fn members_json() {
        let m = Members {
            rollout: RolloutId::from(3),
            wave: 1,
            first: 7,
            devices: vec![DeviceId::new("phone-1").unwrap(), DeviceId::new("phone-2").unwrap()],
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"rollout":"r3","wave":1,"first":7,"devices":["phone-1","phone-2"]}"#);
        assert_eq!(serde_json::from_str::<Members>(&text).unwrap(), m);
    }
}
