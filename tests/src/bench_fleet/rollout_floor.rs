//! The rollout's floor: the same MQTT traffic as the rollout through the same broker, with plain clients
//! and no controller logic. N raw phones (one connection each) answer their update command with the
//! messages an agent's successful job publishes; the floor's controller commands them in the rollout's
//! waves, the next wave when the last one's final reports are in, and acks each final report. What the floor
//! leaves out is what the rollout does beyond moving messages: the controller's engine, store and signing,
//! the agents' journals, downloads (the bind is 4 KiB over HTTP) and installs.

use std::time::Duration;

use super::floor::{self, RawController};
use super::procs::CpuMark;
use super::raw::{RawFleet, Role};
use super::rollout::WAVE_PERCENTS;
use super::{messages, Scenario};
use anyhow::{Context, Result};
use bindwave_proto::wire::TopicKind;

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
    let jobs = messages::prepared(phones)?;
    let fleet = RawFleet::start(s.rt, broker, phones, Role::Floor, jobs.bind_size)?;
    let kinds = [TopicKind::Hello, TopicKind::Presence, TopicKind::Reports];
    let mut ctrl = s.rt.block_on(RawController::connect(broker, "bench-floor-controller", &kinds, s.limit()))?;
    let (broker_cpu, own_cpu) = (CpuMark::now(broker_pid), CpuMark::now(std::process::id()));
    let wall =
        s.rt.block_on(floor::waves(&mut ctrl, &WAVE_PERCENTS, &jobs.commands, &jobs.acks, s.limit()))
            .context("the floor's rollout traffic")?;
    let figures = FloorFigures { wall, broker_cpu: broker_cpu.spent(), clients_cpu: own_cpu.spent() };
    drop(ctrl);
    drop(fleet);
    Ok(figures)
}
