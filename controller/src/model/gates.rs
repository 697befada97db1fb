//! The gates between waves: success ratio, failure and rejection thresholds, soak, timeouts, approval.

use serde::{Deserialize, Serialize};

use super::Analysis;

/// What a tripped threshold does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateAction {
    /// Stop commanding devices until an operator resumes.
    Pause,
    /// Stop for good: devices not yet commanded are cancelled.
    Abort,
}

/// The rules a wave must pass. Set per rollout; each wave may override any of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Queries of the fleet's own health, measured after the wave passes (see [`Analysis`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<Analysis>,
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
            analyses: Vec::new(),
        }
    }
}

/// Per-wave overrides of [`Gates`]; every field left out keeps the rollout's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The wave's own analyses, instead of the rollout's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analyses: Option<Vec<Analysis>>,
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
            analyses: o.analyses.clone().unwrap_or_else(|| self.analyses.clone()),
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
        let max = bindwave_settings::duration::MAX_SECS;
        if !(1..=max).contains(&self.device_timeout_secs) {
            return Err(format!(
                "device_timeout_secs must be from 1 to {max} (a year), not {}",
                self.device_timeout_secs
            ));
        }
        if self.soak_secs > max {
            return Err(format!("soak_secs must be at most {max} (a year), not {}", self.soak_secs));
        }
        if self.max_concurrent == Some(0) {
            return Err("max_concurrent must be at least 1".into());
        }
        for (i, a) in self.analyses.iter().enumerate() {
            a.validate()?;
            if self.analyses[..i].iter().any(|b| b.name == a.name) {
                return Err(format!("two analyses are named {:?}: give each its own name", a.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations past a year are refused by name, whichever way they came (a flag, the API, a scenario).
    #[test]
    fn durations_are_bounded() {
        let max = bindwave_settings::duration::MAX_SECS;
        assert!(Gates { soak_secs: max, device_timeout_secs: max, ..Gates::default() }.validate().is_ok());
        let e = Gates { soak_secs: 18_446_744_073_709_551, ..Gates::default() }.validate().unwrap_err();
        assert!(e.contains("soak_secs must be at most"), "{e}");
        let e = Gates { device_timeout_secs: u64::MAX, ..Gates::default() }.validate().unwrap_err();
        assert!(e.contains("device_timeout_secs must be from 1"), "{e}");
        assert!(Gates { device_timeout_secs: 0, ..Gates::default() }.validate().is_err());
    }
}
