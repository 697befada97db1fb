//! What an operator can do to a rollout.

use serde::{Deserialize, Serialize};

use super::error::EngineError;

/// What an operator can do to a rollout.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    /// Start the first wave (or wait for its approval).
    Start,
    /// Stop commanding devices until resumed.
    Pause,
    /// Go on after a pause; the thresholds count from here.
    Resume,
    /// Stop for good: devices not yet commanded are cancelled.
    Abort,
    /// Abort, and tell the commanded devices to stop too: those that have not begun to install drop their
    /// download and report `cancelled`; the others report their true outcome. Also on an aborted rollout.
    Cancel,
    /// Command failed and timed-out devices again, as a new attempt.
    Retry,
    /// Let a wave that waits for approval start.
    Approve,
}

impl std::str::FromStr for Action {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, EngineError> {
        Action::ALL.iter().copied().find(|a| a.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            EngineError::BadRequest(format!("no rollout action {s:?} ({})", names.join(", ")))
        })
    }
}

impl Action {
    /// Every action, in the order help texts list them.
    pub const ALL: &'static [Action] = <Action as strum::VariantArray>::VARIANTS;

    /// The action's name in the API's paths and the audit log.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
