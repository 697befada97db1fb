//! The controller's durable ingest of final reports, with nothing else the bottleneck: raw "instant phones"
//! say hello as agents do and answer their update with the final `succeeded` report straight away, with no
//! download. They hold their reports until every command is out, so that what is timed is ingest alone: from
//! the moment all N final reports are let go until the last ack arrives. The controller acks a final report
//! only after the batch that recorded it is flushed to its store (`controller/src/service.rs`), so an ack is
//! proof that the outcome is on disk.

use std::time::Instant;

use anyhow::{Context, Result};

use super::controller::Controller;
use super::procs::CpuMark;
use super::raw::{RawFleet, Role};
use super::{BrokerRun, Scenario};

#[derive(Debug, Clone)]
pub struct IngestFigures {
    /// Final reports recorded durably (acked) per second.
    pub reports_per_sec: f64,
    /// Update commands out per second, from `rollout create --start` to the last phone commanded.
    pub commands_per_sec: f64,
    /// The controller's CPU seconds from the release of the reports to the last ack.
    pub controller_cpu: f64,
}

pub fn run(s: &Scenario, broker: &BrokerRun) -> Result<IngestFigures> {
    let phones = s.phones;
    let c = Controller::start(&s.dir, &s.dir.join("controller-data"), &broker.mqtt)?;
    let sha = c.add_bind(&s.dir)?;
    let size = std::fs::metadata(s.dir.join("bench.bind")).map(|m| m.len()).unwrap_or(0);
    let fleet = RawFleet::start(s.rt, &c.mqtt, phones, Role::Instant, size)?;
    c.wait_fleet(phones, s.limit())?;

    let limit = s.limit();
    let started = Instant::now();
    c.cli(&["rollout", "create", "--image", &sha, "--all", "--waves", "100%", "--start"])?;
    fleet.wait("instant phones commanded", phones, limit, |s| &s.commands)?;
    let commanded = fleet.seen.commands.last(fleet.seen.base).context("no phone was commanded")?;
    let commands_per_sec = phones as f64 / commanded.duration_since(started).as_secs_f64();

    let cpu = CpuMark::now(c.pid());
    let released = Instant::now();
    fleet.release();
    fleet.wait("final reports acked", phones, limit, |s| &s.acks)?;
    let last = fleet.seen.acks.last(fleet.seen.base).context("no final report was acked")?;
    let figures = IngestFigures {
        reports_per_sec: phones as f64 / last.duration_since(released).as_secs_f64(),
        commands_per_sec,
        controller_cpu: cpu.spent(),
    };
    drop(fleet);
    drop(c);
    Ok(figures)
}
