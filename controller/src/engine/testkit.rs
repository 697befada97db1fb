//! What the engine's tests build on: devices, an image, rollout specs, reports, and a fleet that said hello.

use bindwave_proto::wire::{DeviceId, Hello, JobState, LevelSource, Reason, Report};
use bindwave_proto::HardwareLevel;

use super::{Action, Effects, Engine, EngineError, Input, Reply};
use crate::model::{GateOverrides, Gates, Image, ImageId, Millis, RolloutId, RolloutSpec, TargetFilter, WaveSpec};

pub(crate) fn id(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

pub(crate) fn hello(device: &str, level: u16, version: &str) -> Hello {
    Hello {
        device_id: id(device),
        part_number: format!("P{level}").into(),
        hardware_level: HardwareLevel(level),
        hardware_level_source: LevelSource::PartNumber,
        hardware_level_conflict: None,
        software_version: version.parse().unwrap(),
        minimum_software_version: "V3 R1.0.0".parse().unwrap(),
        agent_version: "test".into(),
        model: None,
        labels: [].into(),
        heartbeat_secs: None,
        timezone: None,
    }
}

pub(crate) fn image() -> Image {
    Image {
        sha256: ImageId::parse(&"ab".repeat(32)).unwrap(),
        size: 100,
        software_version: "V3 R3.18.0".parse().unwrap(),
        hardware_levels: Some(vec![HardwareLevel(3)]),
        payload_sha256: "cd".repeat(32),
        payload_len: 50,
        added_at: 0,
        signed_by: None,
    }
}

pub(crate) fn report(job: &str, state: JobState) -> Report {
    Report {
        job_id: job.into(),
        state,
        progress: None,
        running_version: None,
        reason: None,
        override_used: false,
        download: None,
    }
}

pub(crate) fn succeeded(job: &str) -> Report {
    Report { running_version: Some("V3 R3.18.0".parse().unwrap()), ..report(job, JobState::Succeeded) }
}

pub(crate) fn failed(job: &str) -> Report {
    Report {
        reason: Some(Reason::ChecksumMismatch { expected: "a".into(), actual: "b".into() }),
        running_version: Some("V3 R1.0.0".parse().unwrap()),
        ..report(job, JobState::Failed)
    }
}

pub(crate) fn rejected_hw(job: &str) -> Report {
    Report {
        reason: Some(Reason::HardwareLevelIncompatible {
            device_level: HardwareLevel(2),
            bind_levels: vec![HardwareLevel(3)],
            level_source: None,
            level_conflict: None,
        }),
        running_version: Some("V3 R1.0.0".parse().unwrap()),
        ..report(job, JobState::Rejected)
    }
}

pub(crate) fn spec(waves: &[&str], gates: Gates) -> RolloutSpec {
    RolloutSpec {
        image: "ababab".into(),
        targets: TargetFilter::default(),
        waves: waves
            .iter()
            .map(|w| WaveSpec {
                size: w.parse().unwrap(),
                gates: GateOverrides::default(),
                schedule: Default::default(),
            })
            .collect(),
        gates,
        schedule: Default::default(),
        timezone: None,
        override_compat: false,
        override_reason: None,
        use_defaults: false,
        seed: Some(1),
    }
}

/// A fleet of `n` devices `d000..`, all at level 3 on one version (one cohort), and the image.
pub(crate) fn fleet(n: usize) -> Engine {
    let mut e = Engine::new("http://ctl:8080/");
    for i in 0..n {
        e.handle(Input::Hello(hello(&format!("d{i:03}"), 3, "V3 R1.0.0")), 0).unwrap();
    }
    e.handle(Input::AddImage(image()), 0).unwrap();
    e
}

pub(crate) fn create(e: &mut Engine, s: RolloutSpec) -> RolloutId {
    match e.handle(Input::CreateRollout { spec: Box::new(s), seed: 0, actor: "alice".into() }, 1).unwrap().0 {
        Reply::Rollout(r) => r.id,
        other => panic!("{other:?}"),
    }
}

pub(crate) fn op(e: &mut Engine, r: &RolloutId, action: Action, now: Millis) -> Result<Effects, EngineError> {
    e.handle(Input::Operate { rollout: *r, action, actor: "alice".into(), reason: "test".into() }, now)
        .map(|(_, fx)| fx)
}
