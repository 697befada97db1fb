//! The controller's ids: rollouts, jobs and images.
//!
//! Each serializes as the string it has always been (`r12`, `r12-phone-0001.2`, a SHA-256 in hex), so the
//! store's and the API's JSON are the same as with plain strings. The MQTT wire carries job and rollout ids as
//! plain strings (agents treat them as opaque); the controller reads a job id back with [`JobId::parse`], once,
//! where a report comes in.

use std::borrow::Borrow;
use std::fmt;

use bindwave_proto::wire::DeviceId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A rollout's id: `r1`, `r2`, ... in the order they were created. Ids order by number, so `r10` sorts after
/// `r9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RolloutId(u64);

impl RolloutId {
    /// The first rollout's id, `r1`.
    pub const FIRST: RolloutId = RolloutId(1);

    /// The number in the id: 12 for `r12`.
    pub fn number(self) -> u64 {
        self.0
    }

    /// The id of the rollout created after this one.
    pub fn next(self) -> RolloutId {
        RolloutId(self.0.saturating_add(1))
    }

    /// Reads an id as [`Display`](fmt::Display) writes it: `r` and a decimal number without sign or leading
    /// zeros. `None` for anything else.
    pub fn parse(s: &str) -> Option<RolloutId> {
        let digits = s.strip_prefix('r')?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return None;
        }
        digits.parse().ok().map(RolloutId)
    }
}

impl From<u64> for RolloutId {
    fn from(n: u64) -> Self {
        RolloutId(n)
    }
}

impl fmt::Display for RolloutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl Serialize for RolloutId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RolloutId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RolloutId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a rollout id (r1, r2, ...)")))
    }
}

bindwave_proto::text_schema!(
    RolloutId,
    "A rollout's id: r and its number, in the order rollouts were created",
    "r12",
    Some("^r(0|[1-9][0-9]*)$")
);

/// A job's id: one device's attempt in a rollout. It reads `r1-phone-0001` for the first attempt, then
/// `r1-phone-0001.2`, `r1-phone-0001.3`, ... for retries, so an old attempt's outcome is never mistaken for
/// the new one's.
///
/// Device ids may hold `.` and `-`, so the text alone can be ambiguous (`r1-a.2` is device `a.2`'s first
/// attempt, or device `a`'s second); it is read back with the device that sent it ([`JobId::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId {
    rollout: RolloutId,
    device: DeviceId,
    attempt: u32,
}

impl JobId {
    /// The id of `device`'s `attempt` (counted from 1; 0 is taken as 1) in `rollout`.
    pub fn new(rollout: RolloutId, device: DeviceId, attempt: u32) -> JobId {
        JobId { rollout, device, attempt: attempt.max(1) }
    }

    /// Reads a job id that `device` sent back (in a report); `None` if it is not the id of any attempt of
    /// that device.
    pub fn parse(s: &str, device: &DeviceId) -> Option<JobId> {
        let (rollout, rest) = s.split_once('-')?;
        let rollout = RolloutId::parse(rollout)?;
        let rest = rest.strip_prefix(device.as_str())?;
        let attempt = match rest.strip_prefix('.') {
            None if rest.is_empty() => 1,
            None => return None,
            Some(n) if n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0') => n.parse().ok()?,
            Some(_) => return None,
        };
        // The first attempt has no suffix: `.1` is not how any id is written.
        if attempt < 2 && !rest.is_empty() {
            return None;
        }
        Some(JobId { rollout, device: device.clone(), attempt })
    }

    /// The rollout the job belongs to.
    pub fn rollout(&self) -> RolloutId {
        self.rollout
    }

    /// The device the job is for.
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Which attempt, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.rollout, self.device)?;
        if self.attempt > 1 {
            write!(f, ".{}", self.attempt)?;
        }
        Ok(())
    }
}

bindwave_proto::text_schema!(
    JobId,
    "A job's id: one device's attempt in a rollout, the rollout's id, the device's, and from the second attempt on \
     its number",
    "r12-phone-0042.2",
    None
);

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An image's id: the SHA-256 of the whole bind file, 64 lowercase hex digits (its content address).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ImageId(String);

bindwave_proto::text_schema!(
    ImageId,
    "An image's id: the SHA-256 of the whole bind file, 64 lowercase hex digits",
    "9f2c4e0b7a1d3c5e8f6a4b2c0d9e7f5a3b1c8d6e4f2a0b9c7d5e3f1a8b6c4d2e",
    Some("^[0-9a-f]{64}$")
);

impl ImageId {
    /// Reads a whole SHA-256 in lowercase hex; `None` for anything else (a prefix is not an id).
    pub fn parse(s: &str) -> Option<ImageId> {
        let hex = s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| ImageId(s.to_string()))
    }

    /// The SHA-256 in hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as tables and metric labels show an image.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lets maps keyed by image id be searched by a hex prefix (ordering and equality are the string's).
impl Borrow<str> for ImageId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ImageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImageId::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a SHA-256 in lowercase hex")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(s: &str) -> DeviceId {
        DeviceId::new(s).unwrap()
    }

    #[test]
    fn rollout_ids_round_trip_and_order_by_number() {
        for n in [0, 1, 9, 10, 12, u64::MAX] {
            let id = RolloutId::from(n);
            assert_eq!(RolloutId::parse(&id.to_string()), Some(id));
            assert_eq!(id.number(), n);
            let json = serde_json::to_value(id).unwrap();
            assert_eq!(json, serde_json::json!(format!("r{n}")), "serializes as the plain string");
            assert_eq!(serde_json::from_value::<RolloutId>(json).unwrap(), id);
        }
        assert!(RolloutId::from(10) > RolloutId::from(9));
        assert_eq!(RolloutId::FIRST.next().to_string(), "r2");
        for bad in ["", "r", "12", "x1", "r-1", "r+1", "r01", "r1x", "R1", "r1 ", "r99999999999999999999"] {
            assert_eq!(RolloutId::parse(bad), None, "{bad:?}");
        }
        assert!(serde_json::from_value::<RolloutId>(serde_json::json!("r01")).is_err());
    }

    #[test]
    fn job_ids_round_trip_with_their_device() {
        let cases = [
            ("r1-phone-0001", "phone-0001", 1, 1),
            ("r1-phone-0001.2", "phone-0001", 1, 2),
            ("r12-a.b-c.10", "a.b-c", 12, 10),
            ("r3-x", "x", 3, 1),
        ];
        for (text, dev, rollout, attempt) in cases {
            let id = JobId::parse(text, &device(dev)).unwrap_or_else(|| panic!("{text}"));
            assert_eq!((id.rollout(), id.device().as_str(), id.attempt()), (RolloutId::from(rollout), dev, attempt));
            assert_eq!(id.to_string(), text);
            assert_eq!(id, JobId::new(RolloutId::from(rollout), device(dev), attempt));
            assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!(text));
        }
        // The same text, read with each device it could belong to.
        let first = JobId::parse("r1-a.2", &device("a.2")).unwrap();
        let second = JobId::parse("r1-a.2", &device("a")).unwrap();
        assert_eq!((first.attempt(), second.attempt()), (1, 2));
        // Attempt 0 is written, and read back, as the first.
        assert_eq!(JobId::new(RolloutId::FIRST, device("a"), 0).attempt(), 1);
    }

    #[test]
    fn foreign_job_ids_are_refused() {
        let d = device("phone-1");
        for bad in [
            "",
            "job-7",
            "r1",
            "r1-",
            "r1-phone-2",
            "r1-phone-1x",
            "r1-phone-1.",
            "r1-phone-1.1",
            "r1-phone-1.02",
            "r1-phone-1.x",
            "r01-phone-1",
            "x1-phone-1",
        ] {
            assert_eq!(JobId::parse(bad, &d), None, "{bad:?}");
        }
    }

    #[test]
    fn image_ids_are_whole_lowercase_sha256s() {
        let sha = "ab".repeat(32);
        let id = ImageId::parse(&sha).unwrap();
        assert_eq!((id.as_str(), id.short(), id.to_string()), (sha.as_str(), "abababababab", sha.clone()));
        assert_eq!(serde_json::to_value(&id).unwrap(), serde_json::json!(sha));
        assert_eq!(serde_json::from_value::<ImageId>(serde_json::json!(sha)).unwrap(), id);
        for bad in ["ababab".to_string(), "AB".repeat(32), "zz".repeat(32), "ab".repeat(33)] {
            assert_eq!(ImageId::parse(&bad), None, "{bad}");
            assert!(serde_json::from_value::<ImageId>(serde_json::json!(bad)).is_err());
        }
    }
}
