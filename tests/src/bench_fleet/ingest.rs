//! The controller's durable ingest of final reports, with nothing else the bottleneck: raw "instant phones"
//! say hello as agents do and answer their update with the final `succeeded` report straight away, with no
//! download. They hold their reports until every command is out, so that what is timed is ingest alone: from
//! the moment all N final reports are let go until the last ack arrives. The controller acks a final report
//! only after the batch that recorded it is flushed to its store (`controller/src/service.rs`), so an ack is
//! proof that the outcome is on disk.
//!
//! Its floor is the same burst through the same broker with a raw controller client that acks each final
//! report as it arrives: what MQTT alone allows on this machine.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bindwave_proto::wire::TopicKind;

use super::controller::Controller;
use super::floor::{self, RawController};
use super::procs::CpuMark;
use super::raw::{RawFleet, Role};
use super::{messages, BrokerRun, Scenario};

#[derive(Debug, Clone)]
pub struct IngestFigures {
    /// Final reports recorded durably (acked) per second.
    pub reports_per_sec: f64,
    /// Update commands out per second, from `rollout create --start` to the last phone commanded.
    pub commands_per_sec: f64,
    /// The controller's CPU seconds from the release of the reports to the last ack.
    pub controller_cpu: f64,
    /// Store flushes (group commits) over the burst, and their mean time in seconds.
    pub flushes: f64,
    pub flush_secs: f64,
    /// Inputs per core batch over the burst, on average.
    pub batch_inputs: f64,
    /// Final reports the phones sent again because no ack came within [`REPORT_RETRY`].
    pub resent: usize,
}

#[derive(Debug, Clone)]
pub struct Floor {
    pub reports_per_sec: f64,
    pub resent: usize,
}

/// How long an instant phone waits for its ack before it sends its final report again: the simulated
/// agents' `report_retry_secs`.
const REPORT_RETRY: Duration = Duration::from_secs(5);

pub fn run(s: &Scenario, broker: &BrokerRun) -> Result<IngestFigures> {
    let phones = s.phones;
    let c = Controller::start(&s.dir, &s.dir.join("controller-data"), &broker.mqtt)?;
    let sha = c.add_bind(&s.dir)?;
    let size = std::fs::metadata(s.dir.join("bench.bind")).map(|m| m.len()).unwrap_or(0);
    let fleet = RawFleet::start(s.rt, &c.mqtt, phones, Role::Instant, size)?;
    c.wait_fleet(phones, s.limit())?;

    let started = Instant::now();
    c.cli(&["rollout", "create", "--image", &sha, "--all", "--waves", "100%", "--start"])?;
    fleet.wait("instant phones commanded", phones, s.limit(), |s| &s.commands)?;
    let commanded = fleet.seen.commands.last(fleet.seen.base).context("no phone was commanded")?;
    let commands_per_sec = phones as f64 / commanded.duration_since(started).as_secs_f64();

    let before = Store::read(&c)?;
    let cpu = CpuMark::now(c.pid());
    let released = Instant::now();
    fleet.release();
    let resent = fleet.wait_acked(phones, REPORT_RETRY, s.limit())?;
    let last = fleet.seen.acks.last(fleet.seen.base).context("no final report was acked")?;
    let controller_cpu = cpu.spent();
    let after = Store::read(&c)?;
    let flushes = after.flushes - before.flushes;
    let batches = after.batches - before.batches;
    Ok(IngestFigures {
        reports_per_sec: phones as f64 / last.duration_since(released).as_secs_f64(),
        commands_per_sec,
        controller_cpu,
        flushes,
        flush_secs: (after.flush_secs - before.flush_secs) / flushes.max(1.0),
        batch_inputs: (after.batch_inputs - before.batch_inputs) / batches.max(1.0),
        resent,
    })
}

/// The floor: the same burst of final reports through `broker`, acked by a raw controller client. Final
/// reports acked per second.
pub fn floor(s: &Scenario, broker: &str) -> Result<Floor> {
    let phones = s.phones;
    let jobs = messages::prepared(phones)?;
    let fleet = RawFleet::start(s.rt, broker, phones, Role::Instant, jobs.bind_size)?;
    let kinds = [TopicKind::Hello, TopicKind::Presence, TopicKind::Reports];
    let ctrl = s.rt.block_on(RawController::connect(broker, "bench-floor-controller", &kinds, s.limit()))?;
    let controller = s.rt.spawn(floor::command_and_ack_all(ctrl, jobs.commands, jobs.acks, s.limit()));
    fleet.wait("instant phones commanded by the floor", phones, s.limit(), |s| &s.commands)?;
    let released = Instant::now();
    fleet.release();
    let waited = fleet.wait_acked(phones, REPORT_RETRY, s.limit());
    let ctrl = s.rt.block_on(controller).context("the floor's controller")??;
    let resent = waited?;
    drop(ctrl);
    let last = fleet.seen.acks.last(fleet.seen.base).context("no final report was acked")?;
    Ok(Floor { reports_per_sec: phones as f64 / last.duration_since(released).as_secs_f64(), resent })
}

/// The controller's store and batch counters.
struct Store {
    flushes: f64,
    flush_secs: f64,
    batches: f64,
    batch_inputs: f64,
}

impl Store {
    fn read(c: &Controller) -> Result<Store> {
        Ok(Store {
            flushes: c.metric("bindwave_store_flushes_total")?,
            flush_secs: c.metric("bindwave_store_flush_duration_seconds_sum")?,
            batches: c.metric("bindwave_core_batch_inputs_count")?,
            batch_inputs: c.metric("bindwave_core_batch_inputs_sum")?,
        })
    }
}
