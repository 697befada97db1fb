//! Software versions as the phones write them.
//!
//! Two spellings are accepted and may be compared with each other:
//! - the phones' own style, `V3 R3.18.0` (also `V3R3.18.0`, `v3 r3.18.0`): version 3, release 3, then
//!   dotted numbers;
//! - plain dotted numbers, `3.3.18.0`.
//!
//! Versions are ordered by their numeric parts, left to right; missing trailing parts count as zero, so
//! `V3 R3.18` == `V3 R3.18.0` == `3.3.18`. The spelling is kept for display only.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::ProtoError;

/// The most numeric parts a version may have.
pub const MAX_PARTS: usize = 8;
/// The longest version string accepted.
pub const MAX_LEN: usize = 64;

/// A version: its numeric parts, held inline (no allocation: a controller holds two for each of a million
/// devices), and its spelling.
#[derive(Debug, Clone)]
pub struct SoftwareVersion {
    parts: [u32; MAX_PARTS],
    len: u8,
    style: Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `V3 R3.18.0`
    VersionRelease,
    /// `3.3.18.0`
    Dotted,
}

impl SoftwareVersion {
    /// The numeric parts, as written.
    pub fn parts(&self) -> &[u32] {
        &self.parts[..usize::from(self.len)]
    }

    /// The parts without trailing zeros: what equality, ordering and hashing use.
    fn significant(&self) -> &[u32] {
        let parts = self.parts();
        let end = parts.iter().rposition(|&p| p != 0).map_or(0, |i| i + 1);
        &parts[..end]
    }
}

impl FromStr for SoftwareVersion {
    type Err = ProtoError;

    fn from_str(input: &str) -> Result<Self, ProtoError> {
        let err = |reason| ProtoError::InvalidVersion { input: input.to_string(), reason };
        if input.len() > MAX_LEN {
            return Err(err("longer than 64 characters"));
        }
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (style, parts) = if let Some(rest) = s.strip_prefix(['V', 'v']) {
            let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            let (major, rest) = rest.split_at(digits_end);
            if major.is_empty() {
                return Err(err("'V' must be followed by a number"));
            }
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix(['R', 'r']) else {
                return Err(err("missing the release part 'R<number>' after the version"));
            };
            let mut parts = vec![number(major).map_err(err)?];
            parts.extend(dotted(rest).map_err(err)?);
            (Style::VersionRelease, parts)
        } else {
            (Style::Dotted, dotted(s).map_err(err)?)
        };
        if parts.len() > MAX_PARTS {
            return Err(err("more than 8 numeric parts"));
        }
        let mut inline = [0; MAX_PARTS];
        inline[..parts.len()].copy_from_slice(&parts);
        let v = SoftwareVersion { parts: inline, len: parts.len() as u8, style };
        // Written out (`V3 R3.18.0`, spaced), a version must read back: every store and message holds it so.
        if input.len() + 2 > MAX_LEN && v.to_string().len() > MAX_LEN {
            return Err(err("longer than 64 characters when written as `V<n> R<n>.<n>...`"));
        }
        Ok(v)
    }
}

fn dotted(s: &str) -> Result<Vec<u32>, &'static str> {
    s.split('.').map(number).collect()
}

fn number(s: &str) -> Result<u32, &'static str> {
    if s.is_empty() {
        return Err("empty numeric part (two dots in a row, or a trailing dot?)");
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("parts must be decimal numbers");
    }
    s.parse().map_err(|_| "numeric part too large")
}

impl fmt::Display for SoftwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |parts: &[u32]| parts.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
        let parts = self.parts();
        match (self.style, parts) {
            (Style::VersionRelease, [major, rest @ ..]) => write!(f, "V{major} R{}", join(rest)),
            _ => f.write_str(&join(parts)),
        }
    }
}

impl PartialEq for SoftwareVersion {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}
impl Eq for SoftwareVersion {}

impl Hash for SoftwareVersion {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.significant().hash(state);
    }
}

impl Ord for SoftwareVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.parts(), other.parts());
        (0..a.len().max(b.len()))
            .map(|i| a.get(i).copied().unwrap_or(0).cmp(&b.get(i).copied().unwrap_or(0)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}
impl PartialOrd for SoftwareVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl serde::Serialize for SoftwareVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SoftwareVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SoftwareVersion {
        s.parse().unwrap()
    }

    #[test]
    fn phone_style_and_dotted_parse_to_the_same_parts() {
        assert_eq!(v("V3 R3.18.0").parts(), &[3, 3, 18, 0]);
        assert_eq!(v("V3R3.18.0").parts(), &[3, 3, 18, 0]);
        assert_eq!(v("v3 r3.18.0").parts(), &[3, 3, 18, 0]);
        assert_eq!(v("3.3.18.0").parts(), &[3, 3, 18, 0]);
        assert_eq!(v("V3 R3.18.0"), v("3.3.18"));
    }

    #[test]
    fn display_keeps_the_spelling_family() {
        assert_eq!(v("V3R3.18.0").to_string(), "V3 R3.18.0");
        assert_eq!(v(" 1.2.3 ").to_string(), "1.2.3");
    }

    #[test]
    fn ordering_is_numeric_not_lexical() {
        assert!(v("V3 R3.9.0") < v("V3 R3.18.0"));
        assert!(v("V3 R10.0.0") > v("V3 R9.99.99"));
        assert!(v("V4 R0.0") > v("V3 R99.0"));
        assert!(v("1.2") < v("1.2.0.1"));
        assert_eq!(v("1.2").cmp(&v("1.2.0.0")), Ordering::Equal);
    }

    #[test]
    fn equal_versions_hash_alike() {
        use std::collections::HashSet;
        let set: HashSet<_> = [v("1.2"), v("1.2.0"), v("V1 R2")].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn bad_strings_are_refused_with_a_reason() {
        for bad in
            ["", "  ", "V", "V3", "V3 X3", "Vx R1", "1..2", "1.2.", "1.a", "-1.2", "1.2.3.4.5.6.7.8.9", "99999999999"]
        {
            let e = bad.parse::<SoftwareVersion>().unwrap_err();
            assert!(matches!(e, ProtoError::InvalidVersion { .. }), "{bad:?} gave {e:?}");
            assert!(e.to_string().contains("expected e.g."), "{e}");
        }
        assert!("9".repeat(65).parse::<SoftwareVersion>().is_err());
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let json = serde_json::to_string(&v("V3R3.18.0")).unwrap();
        assert_eq!(json, "\"V3 R3.18.0\"");
        let back: SoftwareVersion = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v("V3 R3.18.0"));
        assert!(serde_json::from_str::<SoftwareVersion>("\"garbage\"").is_err());
    }

    /// Found by the version fuzz target: 64 characters without the space between `V` and `R` read, but written
    /// out with it they were 65, and did not read back.
    #[test]
    fn a_version_that_would_not_read_back_once_written_is_refused() {
        let tight = "V333333R360330300.63363133.33363200.633316.63333.33363300.633166";
        assert_eq!(tight.len(), 64);
        let e = tight.parse::<SoftwareVersion>().unwrap_err().to_string();
        assert!(e.contains("when written"), "{e}");
        let short: SoftwareVersion = "V3R3.18.0".parse().unwrap();
        assert_eq!(short.to_string().parse::<SoftwareVersion>().unwrap(), short);
    }
}
