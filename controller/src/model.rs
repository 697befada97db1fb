//! The controller's records: what it stores in sled and shows through the API.

use bindwave_proto::wire::{DeviceId, Hello};
use bindwave_proto::{HardwareLevel, SoftwareVersion};
use serde::{Deserialize, Serialize};

mod analysis;
mod fleet;
mod gates;
mod history;
mod ids;
mod job;
mod job_json;
mod members;
mod reasons;
mod rollout;
mod schedule;
mod spec;

pub use analysis::{Analysis, Condition};
pub use fleet::{matches_words, FleetSummary};
pub use gates::{GateAction, GateOverrides, Gates};
pub use history::{note as note_hello_change, HelloChange, HELLO_CHANGES};
pub use ids::{ImageId, JobId, RolloutId};
pub use job::{open_in, Counts, Job, JobPhase, Outcome, Tally};
pub use members::{Members, MEMBERS_PER_RECORD};
pub use reasons::{ReasonGroup, EXAMPLES};
pub use rollout::{Baseline, Cause, CauseKind, Rollout, RolloutState, RolloutStateKind, Stage, Wave};
pub use schedule::{Schedule, ScheduleOverrides};
pub use spec::{RolloutSpec, TargetFilter, WaveSize, WaveSpec};

/// Milliseconds since the Unix epoch. The engine never reads a clock: callers pass `now`.
pub type Millis = u64;

/// A device as the controller knows it, from its hello and presence messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    pub id: DeviceId,
    /// The last hello; absent for a device known only from presence or a report.
    pub hello: Option<Hello>,
    pub online: bool,
    pub last_seen: Millis,
    /// The last few times its hellos changed its software version or hardware level, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<HelloChange>,
}

/// A bind stored by the controller, addressed by the SHA-256 of the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Image {
    pub sha256: ImageId,
    pub size: u64,
    pub software_version: SoftwareVersion,
    /// `None`: the bind has no hardware-level field.
    pub hardware_levels: Option<Vec<HardwareLevel>>,
    pub payload_sha256: String,
    pub payload_len: u64,
    pub added_at: Millis,
    /// The release key that verified the bind's signature when it was added; absent for an unsigned bind
    /// (admitted only with `allow_unsigned_images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<bindwave_proto::KeyId>,
}
/// One line of the audit log: who did what, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Millis,
    /// The operator, or `bindwave` for what the gates did on their own.
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutId>,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindwave_proto::wire::{DeviceId, Hello};
    use serde_json::json;

    /// The names in metrics' labels, the audit log and the CLI are the JSON's names: both come from the
    /// variant names by the same `snake_case` rule, and this holds them together.
    #[test]
    fn enum_names_are_the_json_names() {
        use strum::EnumCount;
        let json = |v: serde_json::Value, tag: &str| v.get(tag).cloned().unwrap_or(v).as_str().unwrap().to_string();
        for o in Outcome::ALL {
            assert_eq!(o.as_str(), json(serde_json::to_value(o).unwrap(), ""));
        }
        for a in crate::engine::Action::ALL {
            assert_eq!(a.as_str(), json(serde_json::to_value(a).unwrap(), ""));
        }
        let who = || ("a".to_string(), "r".to_string());
        let causes = [
            Cause::Operator { actor: who().0, reason: who().1 },
            Cause::EmergencyStop { actor: who().0, reason: who().1 },
            Cause::SuccessGate { wave: 0, succeeded: 0, eligible: 1, required: 1.0 },
            Cause::FailureThreshold { failed: 1, finished: 1, threshold: 0.1 },
            Cause::RejectionThreshold { rejected: 1, finished: 1, threshold: 0.1 },
            Cause::AnalysisFailed {
                wave: 0,
                analysis: "a".into(),
                query: "q".into(),
                value: 1.0,
                condition: "< 1".into(),
                failures: 1,
                limit: 0,
            },
            Cause::AnalysisInconclusive { wave: 0, analysis: "a".into(), query: "q".into(), detail: "d".into() },
        ];
        assert_eq!(causes.len(), Cause::COUNT, "a cause is missing here");
        for c in &causes {
            let name: &'static str = c.into();
            assert_eq!(name, json(serde_json::to_value(c).unwrap(), "cause"));
        }
        for stage in [Stage::AwaitingApproval, Stage::Updating, Stage::Soaking { until: 1 }] {
            let name: &'static str = stage.into();
            assert_eq!(name, json(serde_json::to_value(stage).unwrap(), "stage"));
        }
        let cause = causes[0].clone();
        let states = [
            RolloutState::Created,
            RolloutState::Active { wave: 0, stage: Stage::Updating },
            RolloutState::Paused { wave: 0, stage: Stage::Updating, cause: cause.clone() },
            RolloutState::Aborted { cause },
            RolloutState::Finished,
        ];
        assert_eq!(states.len(), RolloutState::COUNT, "a state is missing here");
        for s in &states {
            assert_eq!(s.name(), json(serde_json::to_value(s).unwrap(), "state"));
            let kind: &'static str = RolloutStateKind::from(s).into();
            assert_eq!(kind, s.name());
        }
        for c in &causes {
            let (kind, name): (&'static str, &'static str) = (CauseKind::from(c).into(), c.into());
            assert_eq!(kind, name);
        }
    }

    /// Golden JSON of a rollout's state, as the API shows it and the store keeps it.
    #[test]
    fn rollout_state_json() {
        let cases = [
            (RolloutState::Created, json!({"state": "created"})),
            (
                RolloutState::Active { wave: 1, stage: Stage::Soaking { until: 5 } },
                json!({"state": "active", "wave": 1, "stage": "soaking", "until": 5}),
            ),
            (
                RolloutState::Paused {
                    wave: 0,
                    stage: Stage::Updating,
                    cause: Cause::Operator { actor: "a".into(), reason: "r".into() },
                },
                json!({"state": "paused", "wave": 0, "stage": "updating", "cause": {"cause": "operator", "actor": "a", "reason": "r"}}),
            ),
        ];
        for (state, golden) in cases {
            assert_eq!(serde_json::to_value(&state).unwrap(), golden);
            assert_eq!(serde_json::from_value::<RolloutState>(golden).unwrap(), state);
        }
    }

    #[test]
    fn target_filters() {
        use bindwave_proto::wire::LevelSource;
        let device = |id: &str, part: &str, level: u16, version: &str, model: Option<&str>, labels: &[&str]| Device {
            id: DeviceId::new(id).unwrap(),
            hello: Some(Hello {
                device_id: DeviceId::new(id).unwrap(),
                part_number: part.into(),
                hardware_level: HardwareLevel(level),
                hardware_level_source: LevelSource::PartNumber,
                hardware_level_conflict: None,
                software_version: version.parse().unwrap(),
                minimum_software_version: "1.0".parse().unwrap(),
                agent_version: "t".into(),
                model: model.map(Into::into),
                labels: labels.iter().map(|l| (*l).into()).collect(),
                heartbeat_secs: None,
                timezone: None,
            }),
            online: true,
            last_seen: 0,
            changes: Vec::new(),
        };
        let a = device("a", "P1", 3, "V3 R1.0.0", Some("CP400"), &["site=munich", "pilot"]);
        let b = device("b", "P2", 4, "V3 R2.0.0", None, &["site=vienna"]);
        let silent =
            Device { id: DeviceId::new("c").unwrap(), hello: None, online: false, last_seen: 0, changes: Vec::new() };
        let all = TargetFilter::default();
        assert!(all.matches(&a) && all.matches(&b) && all.matches(&silent));
        let f = |f: TargetFilter| {
            [&a, &b, &silent].iter().filter(|d| f.matches(d)).map(|d| d.id.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(f(TargetFilter { part_numbers: vec!["P2".into()], ..Default::default() }), ["b"]);
        assert_eq!(f(TargetFilter { models: vec!["CP400".into()], ..Default::default() }), ["a"]);
        assert_eq!(
            f(TargetFilter { hardware_levels: vec![HardwareLevel(3), HardwareLevel(4)], ..Default::default() }),
            ["a", "b"]
        );
        assert_eq!(f(TargetFilter { software_versions: vec!["3.2".parse().unwrap()], ..Default::default() }), ["b"]);
        assert_eq!(f(TargetFilter { labels: vec!["site=munich".into(), "pilot".into()], ..Default::default() }), ["a"]);
        assert_eq!(
            f(TargetFilter { labels: vec!["site=munich".into(), "other".into()], ..Default::default() }),
            Vec::<String>::new()
        );
        let list = TargetFilter {
            devices: vec![DeviceId::new("c").unwrap(), DeviceId::new("b").unwrap()],
            ..Default::default()
        };
        assert_eq!(f(list.clone()), ["b", "c"]);
        assert_eq!(f(TargetFilter { hardware_levels: vec![HardwareLevel(4)], ..list }), ["b"], "criteria combine");
    }

    #[test]
    fn wave_sizes() {
        assert_eq!("1%".parse::<WaveSize>().unwrap().reach(50), 1);
        assert_eq!("10%".parse::<WaveSize>().unwrap().reach(15), 2);
        assert_eq!("all".parse::<WaveSize>().unwrap().reach(7), 7);
        assert_eq!("20".parse::<WaveSize>().unwrap().reach(7), 7);
        for bad in ["0", "0%", "101%", "-1", "x", ""] {
            assert!(bad.parse::<WaveSize>().is_err(), "{bad}");
        }
    }
}
