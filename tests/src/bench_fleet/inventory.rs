//! A controller holding a large inventory (1,000,000 devices by default): its store on disk, its start-up
//! (restoring every record), its memory, and how long it takes to plan a rollout over every device, to create
//! it, and to answer `rollout status` and `/metrics`.
//!
//! A million phones cannot connect to one machine, so the inventory is written straight into the controller's
//! store with the controller's own store code (`bindwave_controller::store`), one device record each, with
//! the hello a simulated phone sends. That is the store a controller has after a million hellos: `bindwave
//! serve` then starts on it as it starts after an upgrade.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bindwave_controller::engine::Record;
use bindwave_controller::fleet::{device_id, FACTORY};
use bindwave_controller::model::Device;
use bindwave_controller::store::Store;
use bindwave_proto::wire::DeviceId;

use bindwave_tests::measure::status_kib;

use super::controller::{Controller, Mqtt};
use super::messages::hello_of;
use super::rollout::WAVES;

/// Records written to the store in one batch while seeding it.
const SEED_BATCH: usize = 10_000;

#[derive(Debug, Clone)]
pub struct InventoryFigures {
    pub devices: usize,
    /// Writing the records and flushing them (the bench's own work, not the controller's).
    pub seed: Duration,
    /// Bytes of the store's files after seeding.
    pub disk_bytes: u64,
    /// From starting `bindwave serve` to its first answer on `/healthz`: the store restored.
    pub start_up: Duration,
    /// `VmRSS` once it answers.
    pub rss_after_start_kib: u64,
    /// `bindwave rollout plan --all`, as the operator runs it (the CLI's own start included).
    pub plan: Duration,
    /// `bindwave rollout create --all`, not started.
    pub create: Duration,
    /// `bindwave rollout status ID`.
    pub status: Duration,
    /// One `GET /metrics`, and its size.
    pub metrics: Duration,
    pub metrics_bytes: usize,
    /// `VmHWM` at the end: the most it held.
    pub peak_kib: u64,
}

pub fn run(rt: &tokio::runtime::Handle, dir: &Path, devices: usize) -> Result<InventoryFigures> {
    let data_dir = dir.join("controller-data");
    let store_dir = data_dir.join("store");
    let started = Instant::now();
    let disk_bytes = seed(rt, &store_dir, devices)?;
    let seed_time = started.elapsed();
    eprintln!("bench-fleet: {devices} device records written in {seed_time:.1?}, {disk_bytes} bytes on disk");

    let started = Instant::now();
    let c = Controller::start(dir, &data_dir, &Mqtt::Embedded)?;
    let start_up = started.elapsed();
    let rss_after_start_kib = bindwave_tests::measure::status_kib(c.pid(), "VmRSS:");
    let sha = c.add_bind(dir)?;

    let timed = |args: &[&str]| -> Result<(Duration, String)> {
        let t = Instant::now();
        let out = c.cli(args)?;
        let (rss, hwm) = (status_kib(c.pid(), "VmRSS:"), status_kib(c.pid(), "VmHWM:"));
        eprintln!(
            "bench-fleet: bindwave {}: {:.2?}, controller RSS {rss} KiB, peak {hwm} KiB",
            args[..2].join(" "),
            t.elapsed()
        );
        Ok((t.elapsed(), out))
    };
    let (plan, _) = timed(&["rollout", "plan", "--image", &sha, "--all", "--waves", WAVES])?;
    // The same plan in full (every device, in its wave), untimed, to check that it covers the inventory.
    let planned = c.json(&["rollout", "plan", "--image", &sha, "--all", "--waves", WAVES])?;
    let waves = planned["waves"].as_array().map(Vec::as_slice).unwrap_or_default();
    let in_plan: usize = waves.iter().map(|w| w["devices"].as_array().map_or(0, Vec::len)).sum();
    anyhow::ensure!(in_plan == devices, "the plan holds {in_plan} of the {devices} devices");
    let (create, id) = timed(&["rollout", "create", "--image", &sha, "--all", "--waves", WAVES])?;
    let (status, _) = timed(&["rollout", "status", id.trim()])?;
    let t = Instant::now();
    let (code, body) = bindwave_tests::http_get(&c.http, "/metrics").context("GET /metrics")?;
    let metrics = t.elapsed();
    anyhow::ensure!(code == 200, "GET /metrics answered {code}");
    let peak_kib = bindwave_tests::measure::status_kib(c.pid(), "VmHWM:");
    let (known, _) = c.devices()?;
    anyhow::ensure!(known == devices, "the controller restored {known} of the {devices} devices written");
    Ok(InventoryFigures {
        devices,
        seed: seed_time,
        disk_bytes,
        start_up,
        rss_after_start_kib,
        plan,
        create,
        status,
        metrics,
        metrics_bytes: body.len(),
        peak_kib,
    })
}

/// Writes `devices` device records, offline, each with a simulated phone's factory hello, and flushes: the
/// store's size on disk.
fn seed(rt: &tokio::runtime::Handle, store_dir: &Path, devices: usize) -> Result<u64> {
    let store = Store::open(store_dir).with_context(|| format!("open a store in {}", store_dir.display()))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64)?;
    let mut batch = Vec::with_capacity(SEED_BATCH);
    for phone in 0..devices {
        batch.push(Record::Device(Box::new(Device {
            id: DeviceId::new(device_id(phone))?,
            hello: Some(hello_of(phone, FACTORY)?),
            online: false,
            last_seen: now,
            changes: Vec::new(),
        })));
        if batch.len() == SEED_BATCH || phone + 1 == devices {
            store.put(&batch)?;
            batch.clear();
        }
    }
    rt.block_on(store.flush())?;
    Ok(store.size_on_disk())
}
