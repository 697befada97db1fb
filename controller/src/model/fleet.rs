//! The fleet as operators look at it: which devices a filter of words matches, and the inventory counted by
//! model, hardware level, software version and online state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Device;

/// Whether `device` matches every word of `filter` (case-insensitive, each a part of its id, model, part
/// number, hardware level, software version, a label, or `online`/`offline`). An empty filter matches every
/// device.
pub fn matches_words(device: &Device, filter: &str) -> bool {
    let words: Vec<String> = filter.split_whitespace().map(str::to_lowercase).collect();
    if words.is_empty() {
        return true;
    }
    let mut text = vec![device.id.as_str().to_lowercase(), if device.online { "online" } else { "offline" }.into()];
    if let Some(h) = &device.hello {
        text.push(h.part_number.to_lowercase());
        text.push(h.hardware_level.to_string());
        text.push(h.software_version.to_string().to_lowercase());
        text.extend(h.model.as_deref().map(str::to_lowercase));
        text.extend(h.labels.iter().map(|l| l.to_lowercase()));
    }
    words.iter().all(|w| text.iter().any(|t| t.contains(w.as_str())))
}

/// The inventory counted: every device, and those a filter matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FleetSummary {
    pub devices: usize,
    pub online: usize,
    /// Devices the filter matches (all of them without one).
    pub matching: usize,
    /// By model (`unknown` for a device without one, or without a hello).
    pub by_model: BTreeMap<String, usize>,
    /// By hardware level (`unknown` without a hello).
    pub by_hardware_level: BTreeMap<String, usize>,
    /// By the software version it runs (`unknown` without a hello).
    pub by_software_version: BTreeMap<String, usize>,
}

impl FleetSummary {
    /// Counts `devices`, and those of them that match `filter`.
    pub fn of<'a>(devices: impl Iterator<Item = &'a Device>, filter: &str) -> FleetSummary {
        let mut s = FleetSummary::default();
        let unknown = || "unknown".to_string();
        for d in devices {
            s.devices += 1;
            s.online += usize::from(d.online);
            s.matching += usize::from(matches_words(d, filter));
            let h = d.hello.as_ref();
            *s.by_model.entry(h.and_then(|h| h.model.as_deref()).map_or_else(unknown, str::to_string)).or_default() +=
                1;
            *s.by_hardware_level.entry(h.map_or_else(unknown, |h| h.hardware_level.to_string())).or_default() += 1;
            *s.by_software_version.entry(h.map_or_else(unknown, |h| h.software_version.to_string())).or_default() += 1;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, model: Option<&str>, level: u16, version: &str, online: bool, labels: &[&str]) -> Device {
        let mut h = crate::engine::testkit::hello(id, level, version);
        h.model = model.map(Into::into);
        h.labels = labels.iter().map(|l| (*l).into()).collect::<Vec<_>>().into();
        Device { id: h.device_id.clone(), hello: Some(h), online, last_seen: 0, changes: Vec::new() }
    }

    #[test]
    fn every_word_must_match_some_part_of_the_device() {
        let d = device("phone-0042", Some("CP400"), 3, "V3 R3.18.0", true, &["site=munich"]);
        for yes in ["", "cp400", "CP400 online", "munich 3", "r3.18", "phone-00", "  site=MUNICH  "] {
            assert!(matches_words(&d, yes), "{yes:?}");
        }
        for no in ["offline", "cp400 offline", "berlin", "CP700"] {
            assert!(!matches_words(&d, no), "{no:?}");
        }
        let silent = Device { hello: None, online: false, ..d.clone() };
        assert!(matches_words(&silent, "offline phone-0042") && !matches_words(&silent, "cp400"));
    }

    #[test]
    fn the_summary_counts_every_device_and_those_matching() {
        let devices = [
            device("a", Some("CP400"), 3, "V3 R1.0.0", true, &[]),
            device("b", Some("CP400"), 3, "V3 R3.18.0", false, &[]),
            device("c", None, 2, "V3 R1.0.0", true, &[]),
        ];
        let s = FleetSummary::of(devices.iter(), "cp400");
        assert_eq!((s.devices, s.online, s.matching), (3, 2, 2));
        assert_eq!(s.by_model, BTreeMap::from([("CP400".into(), 2), ("unknown".into(), 1)]));
        assert_eq!(s.by_hardware_level, BTreeMap::from([("2".into(), 1), ("3".into(), 2)]));
        assert_eq!(s.by_software_version["V3 R1.0.0"], 2);
    }
}
