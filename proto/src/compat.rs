//! The compatibility rule from the phone's admin manual, as one pure function.
//!
//! 1. The bind's header lists supported hardware levels: the bind is compatible iff the phone's own
//!    hardware level is one of them.
//! 2. The header lists none: the bind is compatible iff its software version is at least the minimum
//!    software level the phone knows it supports.
//!
//! Compatible, or Override set: proceed (and an override that was needed is recorded). Otherwise abandon the
//! update and keep running the current software. The agent applies this on every bind it downloads; the
//! controller applies the same function to what devices reported in hello, to predict a rollout.

use serde::{Deserialize, Serialize};

use crate::{BindHeader, HardwareLevel, SoftwareVersion};

/// What a phone knows about itself that the rule needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceProfile {
    pub hardware_level: HardwareLevel,
    pub minimum_software_version: SoftwareVersion,
}

/// Which part of the header decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The header has a hardware-level field.
    HardwareLevel,
    /// The header has none; the software version decided.
    SoftwareLevel,
}

/// Why a bind is not for a phone, with the values compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Rejection {
    HardwareLevelIncompatible { device_level: HardwareLevel, bind_levels: Vec<HardwareLevel> },
    SoftwareLevelBelowMinimum { bind_version: SoftwareVersion, minimum: SoftwareVersion },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::HardwareLevelIncompatible { device_level, bind_levels } => {
                let levels: Vec<String> = bind_levels.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "hardware level {device_level} is not among the bind's supported levels [{}]",
                    levels.join(", ")
                )
            }
            Rejection::SoftwareLevelBelowMinimum { bind_version, minimum } => {
                write!(f, "bind software {bind_version} is below this phone's minimum supported {minimum}")
            }
        }
    }
}

/// The outcome of the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Install. `overridden` holds the rejection that Override set aside, if one was needed.
    Proceed { basis: Basis, overridden: Option<Rejection> },
    /// Abandon the update and keep running the current software.
    Reject { basis: Basis, rejection: Rejection },
}

impl Decision {
    pub fn proceeds(&self) -> bool {
        matches!(self, Decision::Proceed { .. })
    }

    /// True when Override was set and it changed the outcome.
    pub fn override_used(&self) -> bool {
        matches!(self, Decision::Proceed { overridden: Some(_), .. })
    }
}

/// Applies the rule to a bind header for one phone.
pub fn decide(header: &BindHeader, device: &DeviceProfile, override_set: bool) -> Decision {
    let (basis, rejection) = match &header.hardware_levels {
        Some(levels) => (
            Basis::HardwareLevel,
            (!levels.contains(&device.hardware_level)).then(|| Rejection::HardwareLevelIncompatible {
                device_level: device.hardware_level,
                bind_levels: levels.clone(),
            }),
        ),
        None => (
            Basis::SoftwareLevel,
            (header.software_version < device.minimum_software_version).then(|| Rejection::SoftwareLevelBelowMinimum {
                bind_version: header.software_version.clone(),
                minimum: device.minimum_software_version.clone(),
            }),
        ),
    };
    match rejection {
        None => Decision::Proceed { basis, overridden: None },
        Some(rejection) if override_set => Decision::Proceed { basis, overridden: Some(rejection) },
        Some(rejection) => Decision::Reject { basis, rejection },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SoftwareVersion {
        s.parse().unwrap()
    }

    fn header(version: &str, levels: Option<&[u16]>) -> BindHeader {
        BindHeader::new(v(version), levels.map(|l| l.iter().copied().map(HardwareLevel).collect()), 1, [0; 32])
    }

    fn phone(level: u16, minimum: &str) -> DeviceProfile {
        DeviceProfile { hardware_level: HardwareLevel(level), minimum_software_version: v(minimum) }
    }

    /// The whole table: with/without the hardware field x compatible/not x override off/on.
    #[test]
    fn decision_table() {
        let hw_ok = header("V3 R1.0.0", Some(&[3, 4]));
        let hw_bad = header("V3 R9.0.0", Some(&[5]));
        let sw_ok = header("V3 R3.18.0", None);
        let sw_bad = header("V3 R3.17.9", None);
        let dev = phone(3, "V3 R3.18.0");

        let hw_rejection = Rejection::HardwareLevelIncompatible {
            device_level: HardwareLevel(3),
            bind_levels: vec![HardwareLevel(5)],
        };
        let sw_rejection =
            Rejection::SoftwareLevelBelowMinimum { bind_version: v("V3 R3.17.9"), minimum: v("V3 R3.18.0") };

        let (hw, sw) = (Basis::HardwareLevel, Basis::SoftwareLevel);
        let table = [
            (&hw_ok, false, Decision::Proceed { basis: hw, overridden: None }),
            (&hw_ok, true, Decision::Proceed { basis: hw, overridden: None }),
            (&hw_bad, false, Decision::Reject { basis: hw, rejection: hw_rejection.clone() }),
            (&hw_bad, true, Decision::Proceed { basis: hw, overridden: Some(hw_rejection) }),
            (&sw_ok, false, Decision::Proceed { basis: sw, overridden: None }),
            (&sw_ok, true, Decision::Proceed { basis: sw, overridden: None }),
            (&sw_bad, false, Decision::Reject { basis: sw, rejection: sw_rejection.clone() }),
            (&sw_bad, true, Decision::Proceed { basis: sw, overridden: Some(sw_rejection) }),
        ];
        for (h, ovr, want) in table {
            assert_eq!(decide(h, &dev, ovr), want, "header {h:?} override {ovr}");
        }
    }

    #[test]
    fn hardware_field_wins_over_software_level() {
        // A bind with a hardware field is judged by it alone, even if its version is below the minimum.
        let h = header("V1 R0.0.1", Some(&[3]));
        assert!(decide(&h, &phone(3, "V3 R5.0.0"), false).proceeds());
        // And a new version does not save a bind for another hardware level.
        let h = header("V9 R9.0.0", Some(&[2]));
        assert!(!decide(&h, &phone(3, "V1 R0.0.0"), false).proceeds());
    }

    #[test]
    fn software_level_edges() {
        // Equal to the minimum is compatible, whatever the spelling.
        assert!(decide(&header("3.3.18", None), &phone(1, "V3 R3.18.0"), false).proceeds());
        assert!(!decide(&header("V3 R3.18", None), &phone(1, "V3 R3.18.0.1"), false).proceeds());
        assert!(decide(&header("V3 R10.0.0", None), &phone(1, "V3 R9.0.0"), false).proceeds());
    }

    #[test]
    fn hardware_level_edges() {
        assert!(decide(&header("1.0", Some(&[0])), &phone(0, "1.0"), false).proceeds());
        assert!(decide(&header("1.0", Some(&[u16::MAX])), &phone(u16::MAX, "1.0"), false).proceeds());
        assert!(!decide(&header("1.0", Some(&[1, 2, 4])), &phone(3, "1.0"), false).proceeds());
    }

    #[test]
    fn override_is_recorded_only_when_it_was_needed() {
        let d = decide(&header("1.0", Some(&[1])), &phone(1, "1.0"), true);
        assert!(!d.override_used());
        let d = decide(&header("1.0", Some(&[2])), &phone(1, "1.0"), true);
        assert!(d.override_used() && d.proceeds());
    }

    #[test]
    fn rejections_read_well() {
        let r = Rejection::HardwareLevelIncompatible {
            device_level: HardwareLevel(2),
            bind_levels: vec![HardwareLevel(3), HardwareLevel(4)],
        };
        assert_eq!(r.to_string(), "hardware level 2 is not among the bind's supported levels [3, 4]");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "hardware_level_incompatible", "device_level": 2, "bind_levels": [3, 4]})
        );
    }
}
