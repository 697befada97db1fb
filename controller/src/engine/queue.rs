//! A wave's devices waiting for their command, in plan order, in lanes by time zone: where a wave has
//! windows, a lane whose window is closed waits without holding the others back. A wave without windows has
//! one lane, and its order is the plan's.

use std::collections::VecDeque;
use std::sync::Arc;

use bindwave_proto::wire::DeviceId;

use crate::model::Millis;
use crate::schedule::{openness, Openness, Window};

/// The devices of one wave waiting for their command.
#[derive(Debug, Clone, Default)]
pub(super) struct WaveQueue {
    lanes: Vec<Lane>,
}

/// The waiting devices of one time zone.
#[derive(Debug, Clone)]
pub(super) struct Lane {
    /// The zone's IANA name; empty in a wave without windows.
    pub zone: Arc<str>,
    pub devices: VecDeque<DeviceId>,
    /// What the windows were found to be, kept until it changes (the `until` it names).
    open: Option<Openness>,
}

impl PartialEq for WaveQueue {
    /// The same devices in the same lanes; empty lanes, and what a lane last found of its windows, aside.
    fn eq(&self, other: &WaveQueue) -> bool {
        let lanes = |q: &WaveQueue| {
            q.lanes
                .iter()
                .filter(|l| !l.devices.is_empty())
                .map(|l| (l.zone.clone(), l.devices.clone()))
                .collect::<Vec<_>>()
        };
        lanes(self) == lanes(other)
    }
}

impl WaveQueue {
    /// Queues a device at the back of its zone's lane.
    pub fn push_back(&mut self, device: DeviceId, zone: Arc<str>) {
        match self.lanes.iter_mut().find(|l| l.zone == zone) {
            Some(lane) => lane.devices.push_back(device),
            None => self.lanes.push(Lane { zone, devices: VecDeque::from([device]), open: None }),
        }
    }

    pub fn clear(&mut self) {
        self.lanes.clear();
    }

    pub fn lanes_mut(&mut self) -> impl Iterator<Item = &mut Lane> {
        self.lanes.iter_mut()
    }
}

impl Lane {
    /// Whether `windows` are open for this lane's zone at `now`, and until when; found again only once the
    /// last finding has run out. An unknown zone (none is queued under one) is taken as UTC.
    pub fn openness(&mut self, windows: &[Window], now: Millis) -> Openness {
        let fresh = match self.open {
            Some(Openness::Open { until }) => now < until,
            Some(Openness::Closed { until: Some(until) }) => now < until,
            Some(Openness::Closed { until: None }) | None => false,
        };
        if !fresh {
            let tz = crate::schedule::zone_or_utc(&self.zone);
            self.open = Some(openness(windows, &tz, now));
        }
        self.open.unwrap_or(Openness::Closed { until: None })
    }
}
