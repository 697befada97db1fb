//! A device's history from its hellos: each time its software version or hardware level changed, the last few.

use bindwave_proto::wire::Hello;
use bindwave_proto::{HardwareLevel, SoftwareVersion};
use serde::{Deserialize, Serialize};

use super::Millis;

/// The changes a device keeps: the newest, oldest first. Bounded, for a record the controller holds for every
/// device in memory; the jobs keep the rest of a device's story.
pub const HELLO_CHANGES: usize = 4;

/// One change between two hellos of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HelloChange {
    /// When the hello that changed it came.
    pub at: Millis,
    /// What the hello before said, and what this one says.
    pub from_version: SoftwareVersion,
    pub to_version: SoftwareVersion,
    pub from_level: HardwareLevel,
    pub to_level: HardwareLevel,
}

/// Notes in `changes` what a new hello changed from the old one, if anything, dropping the oldest past
/// [`HELLO_CHANGES`].
pub fn note(changes: &mut Vec<HelloChange>, old: &Hello, new: &Hello, at: Millis) {
    if old.software_version == new.software_version && old.hardware_level == new.hardware_level {
        return;
    }
    if changes.len() >= HELLO_CHANGES {
        changes.remove(0);
    }
    changes.push(HelloChange {
        at,
        from_version: old.software_version.clone(),
        to_version: new.software_version.clone(),
        from_level: old.hardware_level,
        to_level: new.hardware_level,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: &str, level: u16) -> Hello {
        let mut h = crate::engine::testkit::hello("d", level, version);
        h.software_version = version.parse().unwrap();
        h
    }

    #[test]
    fn a_change_of_version_or_level_is_noted_and_only_the_newest_are_kept() {
        let mut changes = Vec::new();
        note(&mut changes, &hello("V3 R1.0.0", 3), &hello("V3 R1.0.0", 3), 1);
        assert!(changes.is_empty(), "the same hello again changes nothing");
        note(&mut changes, &hello("V3 R1.0.0", 3), &hello("V3 R3.18.0", 3), 2);
        assert_eq!(changes.len(), 1);
        let c = &changes[0];
        assert_eq!(
            (c.at, c.from_version.to_string(), c.to_version.to_string()),
            (2, "V3 R1.0.0".into(), "V3 R3.18.0".into())
        );
        for i in 0..10u16 {
            note(&mut changes, &hello("V3 R3.18.0", 3 + i), &hello("V3 R3.18.0", 4 + i), 10 + u64::from(i));
        }
        assert_eq!(changes.len(), HELLO_CHANGES);
        assert_eq!(changes.last().unwrap().at, 19);
        assert_eq!(changes[0].at, 16);
    }
}
