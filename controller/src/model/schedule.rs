//! When a wave's commands may go and its phones may install: maintenance windows, install windows, a rate.
//! Set per rollout; each wave may override any part. What the times mean is in [`crate::schedule`].

use serde::{Deserialize, Serialize};

use crate::schedule::{Ramp, Rate, Window};

/// A wave's schedule. Empty (the default): commands go at once, phones install when verified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Phones are commanded only while one of these is open, in the phone's time zone; they also install only
    /// inside them, unless `install_windows` says otherwise. Empty: at any time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// Phones install only inside these (in their time zone): commanded when `windows` allow, they download
    /// and verify at once, report `downloaded`, and install when one opens, with or without the broker.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub install_windows: Vec<Window>,
    /// Commands go out no faster than this, counted from the wave's first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Commands go out at a rate that grows (capped by `rate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}

impl Schedule {
    pub fn is_empty(&self) -> bool {
        *self == Schedule::default()
    }

    /// The windows phones install in: the install windows, else the command windows (a phone commanded near a
    /// window's end waits for the next rather than install in the day); empty: at once.
    pub fn installs_in(&self) -> &[Window] {
        if self.install_windows.is_empty() {
            &self.windows
        } else {
            &self.install_windows
        }
    }

    pub fn with(&self, o: &ScheduleOverrides) -> Schedule {
        Schedule {
            windows: o.windows.clone().unwrap_or_else(|| self.windows.clone()),
            install_windows: o.install_windows.clone().unwrap_or_else(|| self.install_windows.clone()),
            rate: o.rate.or(self.rate),
            ramp: o.ramp.or(self.ramp),
        }
    }
}

/// One wave's changes to the rollout's [`Schedule`]; every part left out keeps the rollout's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<Window>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_windows: Option<Vec<Window>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
}
