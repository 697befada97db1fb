//! The rollout's floor: the same MQTT traffic as the rollout through the same broker, with plain clients
//! and no controller logic. N raw phones (one connection each) answer their update command with the
//! messages an agent's successful job publishes; the floor's controller commands them in the rollout's
//! waves, the next wave when the last one's final reports are in, and acks each final report. What the floor
//! leaves out is what the rollout does beyond moving messages: the controller's engine, store and signing,
//! the agents' journals, downloads (the bind is 4 KiB over HTTP) and installs.

use std::time::Duration;

use anyhow::{Context, Result};
use bindwave_proto::wire::TopicKind;
use sha2::Digest;

use super::controller::{BIND_PAYLOAD, BIND_VERSION};
use super::floor::{self, RawController};
use super::procs::CpuMark;
use super::raw::{RawFleet, Role};
use super::rollout::WAVE_PERCENTS;
use super::{messages, Scenario};

#[derive(Debug, Clone)]
pub struct FloorFigures {
    /// From the first command to the last final report.
    pub wall: Duration,
    /// The broker's CPU seconds over the floor.
    pub broker_cpu: f64,
    /// The bench's own CPU seconds over the floor: the raw phones and the floor's controller.
    pub clients_cpu: f64,
}

/// Runs the floor through `broker` (`mqtt://...`), whose process is `broker_pid`.
pub fn run(s: &Scenario, broker: &str, broker_pid: u32) -> Result<FloorFigures> {
    let phones = s.phones;
    let bind = bindwave_proto::bind::pack(BIND_VERSION.parse()?, None, &vec![0x5a; BIND_PAYLOAD])?;
    let (size, sha) = (bind.len() as u64, hex::encode(sha2::Sha256::digest(&bind)));
    let url = format!("http://127.0.0.1:8080/binds/{sha}.bind");
    let (mut commands, mut acks) = (Vec::with_capacity(phones), Vec::with_capacity(phones));
    for i in 0..phones {
        let job = messages::job_id("r1", i);
        commands.push(messages::update_command(i, &job, "r1", &url, size, &sha)?);
        acks.push(messages::ack_command(i, &job)?);
    }
    let fleet = RawFleet::start(s.rt, broker, phones, Role::Floor, size)?;
    let kinds = [TopicKind::Hello, TopicKind::Presence, TopicKind::Reports];
    let mut ctrl = s.rt.block_on(RawController::connect(broker, "bench-floor-controller", &kinds, s.limit()))?;
    let (broker_cpu, own_cpu) = (CpuMark::now(broker_pid), CpuMark::now(std::process::id()));
    let wall =
        s.rt.block_on(floor::waves(&mut ctrl, &WAVE_PERCENTS, &commands, &acks, s.limit()))
            .context("the floor's rollout traffic")?;
    let figures = FloorFigures { wall, broker_cpu: broker_cpu.spent(), clients_cpu: own_cpu.spent() };
    drop(ctrl);
    drop(fleet);
    Ok(figures)
}
