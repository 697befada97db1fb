//! What the controller refuses to believe from the wire: each refusal has a kind, which
//! `bindwave_refused_total{what}` counts and the log names once a minute per kind.
//!
//! The engine refuses reports and hello changes ([`Reply::Refused`](super::Reply::Refused)); the service
//! refuses payloads that do not decode before they reach it; the embedded broker refuses logins and
//! publishes or subscriptions outside a client's lane.

use bindwave_proto::wire::DeviceId;

/// The kinds of refused input, as `bindwave_refused_total{what}` labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Refused {
    /// A payload over the message size limit.
    Oversized,
    /// A payload, or a topic, that does not decode.
    Malformed,
    /// A hello whose device id is not its topic's.
    HelloForOtherDevice,
    /// A report for a job id that is no job of ours.
    UnknownJob,
    /// A report on one device's topic for another device's job.
    OtherDevicesJob,
    /// A report for a job that was never sent to the device (created, or cancelled, and never commanded).
    JobNotSent,
    /// A hello that changes a known device's hardware level without the hardware probe as its source: the
    /// stored level is kept.
    HardwareLevelChange,
    /// An MQTT client the embedded broker did not let in (anonymous, wrong password or certificate, a client
    /// id that is not its identity).
    MqttAuth,
    /// A publish outside the client's lane.
    MqttPublishDenied,
    /// A subscription outside the client's lane.
    MqttSubscribeDenied,
    /// An HTTP connection over `http_max_connections`, closed at once.
    HttpConnectionLimit,
    /// An image upload that is not a bind, has an empty payload, or no trusted key verifies.
    ImageUpload,
    /// A bind download whose name is not `<sha256>.bind` (a `..` path, or any other).
    BadPath,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One refusal: of what kind, from which device's topic, and the detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub what: Refused,
    pub device: DeviceId,
    pub detail: String,
}

/// How often one kind of refusal is logged while they keep coming: the first at once, then one line a minute
/// with the count since, so that a flood of forgeries is a line a minute, not a line each.
pub const LOG_EVERY_MILLIS: crate::model::Millis = 60_000;

/// When each kind of refusal was last logged, and how many came since. Pure: the time is an argument.
#[derive(Debug, Default)]
pub struct RefusalLog {
    logged: std::collections::BTreeMap<Refused, (crate::model::Millis, u64)>,
}

impl RefusalLog {
    /// Notes a refusal at `now`: `Some(n)` when it is to be logged now, `n` being the refusals of its kind since
    /// the last line, this one included.
    pub fn note(&mut self, what: Refused, now: crate::model::Millis) -> Option<u64> {
        match self.logged.get_mut(&what) {
            Some((at, since)) if now.saturating_sub(*at) < LOG_EVERY_MILLIS => {
                *since += 1;
                None
            }
            Some((at, since)) => {
                let n = *since + 1;
                (*at, *since) = (now, 0);
                Some(n)
            }
            None => {
                self.logged.insert(what, (now, 0));
                Some(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_a_minute_per_kind() {
        let mut log = RefusalLog::default();
        assert_eq!(log.note(Refused::Malformed, 0), Some(1));
        for t in 1..1000 {
            assert_eq!(log.note(Refused::Malformed, t), None);
        }
        assert_eq!(log.note(Refused::UnknownJob, 10), Some(1), "each kind has its own line");
        assert_eq!(log.note(Refused::Malformed, LOG_EVERY_MILLIS), Some(1000));
        assert_eq!(log.note(Refused::Malformed, LOG_EVERY_MILLIS + 1), None);
    }
}
