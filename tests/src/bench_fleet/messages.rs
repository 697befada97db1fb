//! What the raw clients send, built with the wire types (and signed, where the controller signs), so that
//! every message has the size and shape a real fleet's has.

use anyhow::{Context, Result};
use bindwave_controller::fleet::{device_id, FACTORY, MINIMUMS, MODELS, SITES};
use bindwave_proto::wire::{
    Command, DeviceId, DownloadStats, Hello, JobState, LevelSource, Presence, Report, TopicKind, UpdateCommand,
};
use bindwave_proto::HardwareLevel;

use sha2::Digest;

use super::controller::{BIND_PAYLOAD, BIND_VERSION};

/// A device's topic of one kind.
pub fn topic(kind: TopicKind, phone: usize) -> Result<String> {
    Ok(kind.topic(&DeviceId::new(device_id(phone))?))
}

/// The hello of simulated phone `phone` (the simulator's models, minimums and sites), running `version`.
pub fn hello(phone: usize, version: &str) -> Result<Vec<u8>> {
    Ok(hello_of(phone, version)?.to_json()?)
}

/// The same hello, as the wire type.
pub fn hello_of(phone: usize, version: &str) -> Result<Hello> {
    let (model, part, level) = MODELS[phone % MODELS.len()];
    Ok(Hello {
        device_id: DeviceId::new(device_id(phone))?,
        part_number: part.into(),
        hardware_level: HardwareLevel(level),
        hardware_level_source: LevelSource::PartNumber,
        hardware_level_conflict: None,
        software_version: version.parse()?,
        minimum_software_version: MINIMUMS[phone % MINIMUMS.len()].parse()?,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        model: Some(model.into()),
        labels: [SITES[phone % SITES.len()].into()].into(),
        heartbeat_secs: Some(300),
        timezone: None,
    })
}

/// The factory hello (what every phone runs before its first update).
pub fn factory_hello(phone: usize) -> Result<Vec<u8>> {
    hello(phone, FACTORY)
}

pub fn presence(online: bool) -> Result<Vec<u8>> {
    Ok(Presence { online }.to_json()?)
}

/// The job id the controller gives a device's first attempt in rollout `rollout`.
pub fn job_id(rollout: &str, phone: usize) -> String {
    format!("{rollout}-{}", device_id(phone))
}

/// A progress report.
pub fn progress(job: &str, state: JobState, percent: Option<u8>) -> Result<Vec<u8>> {
    let r = Report {
        job_id: job.to_string(),
        state,
        progress: percent,
        running_version: None,
        reason: None,
        override_used: false,
        download: None,
    };
    Ok(r.to_json()?)
}

/// The final report of a job that installed the bench's bind, with the download's figures.
pub fn succeeded(job: &str, bind_size: u64) -> Result<Vec<u8>> {
    let r = Report {
        job_id: job.to_string(),
        state: JobState::Succeeded,
        progress: None,
        running_version: Some(BIND_VERSION.parse()?),
        reason: None,
        override_used: false,
        download: Some(DownloadStats { bytes: bind_size, millis: 3, attempts: 1 }),
    };
    Ok(r.to_json()?)
}

/// What a phone publishes for a successful update of a small bind, in order, as the agent does (see
/// `agent/src/core` and `agent/src/job.rs`): `received`, `downloading` at 0 %, `verifying`, `installing` and
/// the final `succeeded` report (QoS 1 each), then its hello again with the new version (retained).
/// `(topic kind, payload, retained)`.
pub fn successful_job(phone: usize, job: &str, bind_size: u64) -> Result<Vec<(TopicKind, Vec<u8>, bool)>> {
    Ok(vec![
        (TopicKind::Reports, progress(job, JobState::Received, None)?, false),
        (TopicKind::Reports, progress(job, JobState::Downloading, Some(0))?, false),
        (TopicKind::Reports, progress(job, JobState::Verifying, None)?, false),
        (TopicKind::Reports, progress(job, JobState::Installing, None)?, false),
        (TopicKind::Reports, succeeded(job, bind_size)?, false),
        (TopicKind::Hello, hello(phone, BIND_VERSION)?, true),
    ])
}

/// The signed update command the controller sends for `job` (with the rollout's 30-minute device timeout).
pub fn update_command(phone: usize, job: &str, rollout: &str, url: &str, size: u64, sha256: &str) -> Result<Vec<u8>> {
    let command = Command::Update(UpdateCommand {
        job_id: job.to_string(),
        rollout_id: rollout.to_string(),
        url: url.to_string(),
        size,
        sha256: sha256.to_string(),
        override_compat: false,
        use_defaults: false,
        timeout_secs: Some(1800),
        install_windows: Vec::new(),
    });
    signed(phone, &command)
}

/// The signed ack the controller sends once it has recorded a job's final report.
pub fn ack_command(phone: usize, job: &str) -> Result<Vec<u8>> {
    signed(phone, &Command::Ack { job_id: job.to_string() })
}

fn signed(phone: usize, command: &Command) -> Result<Vec<u8>> {
    let json = String::from_utf8(command.to_json()?).context("a command's JSON is UTF-8")?;
    Ok(bindwave_tests::sign_command(&device_id(phone), &json).into_bytes())
}

/// What a floor's controller sends in rollout `r1` of a bind with a 4 KiB payload: each phone's signed
/// update command and its ack, and the bind's size.
pub struct Prepared {
    pub bind_size: u64,
    pub commands: Vec<Vec<u8>>,
    pub acks: Vec<Vec<u8>>,
}

pub fn prepared(phones: usize) -> Result<Prepared> {
    let bind = bindwave_proto::bind::pack(BIND_VERSION.parse()?, None, &vec![0x5a; BIND_PAYLOAD])?;
    let (bind_size, sha) = (bind.len() as u64, hex::encode(sha2::Sha256::digest(&bind)));
    let url = format!("http://127.0.0.1:8080/binds/{sha}.bind");
    let (mut commands, mut acks) = (Vec::with_capacity(phones), Vec::with_capacity(phones));
    for i in 0..phones {
        let job = job_id("r1", i);
        commands.push(update_command(i, &job, "r1", &url, bind_size, &sha)?);
        acks.push(ack_command(i, &job)?);
    }
    Ok(Prepared { bind_size, commands, acks })
}

/// The job id of an update command, or of an ack or cancel (`None` for what is none of them).
pub fn command_job(payload: &[u8]) -> Option<(bool, String)> {
    match bindwave_proto::wire::CommandMessage::from_json(payload).ok()?.command {
        Command::Update(u) => Some((true, u.job_id)),
        Command::Ack { job_id } | Command::Cancel { job_id } => Some((false, job_id)),
    }
}
