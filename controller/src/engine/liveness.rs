//! Liveness: a phone that says how often it beats (its hello's `heartbeat_secs`) and then stays silent for
//! [`HEARTBEATS_MISSED`] beats is taken as offline, whether or not its last will arrived. A broker restart loses
//! the wills of the phones that died with it; an external broker can hand back a dead phone's retained
//! presence. So online state needs a deadline of its own. Anything a phone sends counts as a beat: a hello, a
//! presence, a report.

use bindwave_proto::wire::{DeviceId, HEARTBEATS_MISSED};

use super::{Effects, Engine, Record};
use crate::model::Millis;

/// How often the online devices' deadlines are checked (a scan of the inventory, about 5 ms for a million).
pub(super) const SCAN_MILLIS: Millis = 5_000;

impl Engine {
    /// Device `id` was heard from at `now`.
    pub(super) fn heard(&mut self, id: &DeviceId, now: Millis) {
        let Some(d) = self.devices.get_mut(id) else { return };
        d.last_seen = d.last_seen.max(now);
        if d.online && d.hello.as_ref().is_some_and(|h| h.heartbeat_secs.is_some()) && self.liveness_at.is_none() {
            self.liveness_at = Some(now.saturating_add(SCAN_MILLIS));
        }
    }

    /// Takes every online device silent past its deadline as offline; schedules the next scan while any online
    /// device beats.
    pub(super) fn check_liveness(&mut self, now: Millis, fx: &mut Effects) {
        if self.liveness_at.is_none_or(|at| at > now) {
            return;
        }
        let mut beating = false;
        for d in self.devices.values_mut().filter(|d| d.online) {
            let Some(secs) = d.hello.as_ref().and_then(|h| h.heartbeat_secs) else { continue };
            let deadline = d.last_seen.saturating_add(u64::from(secs).saturating_mul(1000 * HEARTBEATS_MISSED));
            if now > deadline {
                tracing::info!(device = %d.id, silent_secs = (now - d.last_seen) / 1000, heartbeat_secs = secs,
                    "no heartbeat from the device: taken as offline");
                d.online = false;
                fx.put(Record::Device(Box::new(d.clone())));
            } else {
                beating = true;
            }
        }
        self.liveness_at = beating.then(|| now.saturating_add(SCAN_MILLIS));
    }
}
