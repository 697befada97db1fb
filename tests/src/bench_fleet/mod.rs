//! The fleet benchmark: what it runs, in which order, and the table it prints. Each measurement is a module
//! of its own; `report` turns their figures into rows.

mod agent;
pub mod args;
mod broker;
mod controller;
mod floor;
mod ingest;
mod inventory;
mod messages;
mod procs;
mod raw;
mod report;
mod rollout;
mod rollout_floor;
mod simulator;
mod storm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use bindwave_tests::Mosquitto;

use args::{Args, BrokerKind, Measure, Sub};
use controller::Mqtt;
use report::{kib, mib, per_sec, secs, Against, Row};

/// The targets (see BENCHMARKS.md).
const ROLLOUT_MAX_FLOOR_RATIO: f64 = 1.5;
const ROLLOUT_MIN_RATE: f64 = 5_000.0;
const INGEST_MIN_RATE: f64 = 50_000.0;
const STORM_MAX_FLOOR_RATIO: f64 = 3.0;
const INVENTORY_MAX_RSS_MIB: f64 = 1024.0;
const INVENTORY_MAX_PLAN_SECS: f64 = 2.0;
const INVENTORY_MAX_START_SECS: f64 = 10.0;
/// Descriptors a process needs beside its phones' sockets (store, logs, HTTP, the broker's own).
const DESCRIPTOR_RESERVE: u64 = 1_000;

/// One measurement's setting.
pub struct Scenario<'a> {
    pub rt: &'a tokio::runtime::Handle,
    pub phones: usize,
    /// Its logs and the controller's store (on the real disk).
    pub dir: PathBuf,
    /// Where simulated phones keep their state (tmpfs).
    pub phone_state_root: PathBuf,
}

impl Scenario<'_> {
    /// How long any one step may take: a minute, and 10 ms a phone.
    pub fn limit(&self) -> Duration {
        Duration::from_secs(60) + Duration::from_millis(10 * self.phones as u64)
    }
}

/// The broker a measurement goes through.
pub struct BrokerRun {
    pub mqtt: Mqtt,
    /// An external broker's process (the embedded one is the controller's).
    pub pid: Option<u32>,
    _mosquitto: Option<Mosquitto>,
}

impl BrokerRun {
    /// The embedded broker, or a fresh Mosquitto in `dir`.
    fn start(kind: BrokerKind, dir: &Path) -> Result<BrokerRun> {
        match kind {
            BrokerKind::Embedded => Ok(BrokerRun { mqtt: Mqtt::Embedded, pid: None, _mosquitto: None }),
            BrokerKind::Mosquitto => {
                if !["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].iter().any(|p| Path::new(p).exists()) {
                    anyhow::bail!(
                        "mosquitto is not installed: `apt-get install -y mosquitto`, or pass --brokers embedded"
                    );
                }
                let m = Mosquitto::start(dir);
                Ok(BrokerRun { mqtt: Mqtt::External(m.url.clone()), pid: Some(m.proc.pid()), _mosquitto: Some(m) })
            }
        }
    }
}

impl BrokerRun {
    /// An external broker's URL and process.
    fn external(&self) -> Option<(&str, u32)> {
        match (&self.mqtt, self.pid) {
            (Mqtt::External(url), Some(pid)) => Some((url, pid)),
            _ => None,
        }
    }
}

/// Runs everything the arguments ask for and prints the table. False if a measurement failed.
pub fn run(args: Args) -> Result<bool> {
    if let Some(Sub::Broker { listen }) = args.command {
        broker::serve(listen)?;
        return Ok(true);
    }
    bindwave_controller::raise_open_files_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start a tokio runtime")?;
    let root = args.controller_root.clone().unwrap_or_else(std::env::temp_dir);
    let run_dir = tempfile::Builder::new()
        .prefix("bench-fleet-")
        .tempdir_in(&root)
        .with_context(|| format!("make a directory under {}", root.display()))?;
    let started = now_utc();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("bench-fleet: logs and stores in {}", run_dir.path().display());

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    for phones in args.sizes() {
        if let Some(why) = too_big(phones) {
            skipped.push(format!("{phones} phones: {why}"));
            continue;
        }
        for &kind in &args.brokers {
            let dir = run_dir.path().join(format!("{phones}-{}", kind.name()));
            let s = |name: &str| -> Result<Scenario<'_>> {
                let d = dir.join(name);
                std::fs::create_dir_all(&d).with_context(|| format!("make {}", d.display()))?;
                Ok(Scenario { rt: rt.handle(), phones, dir: d, phone_state_root: args.phone_state_root.clone() })
            };
            let mut step = |what: &str, f: &mut dyn FnMut() -> Result<Vec<Row>>| {
                eprintln!("bench-fleet: {phones} phones, {} broker: {what}", kind.name());
                match f() {
                    Ok(r) => {
                        eprint!("{}", report::render(&r));
                        rows.extend(r);
                    }
                    Err(e) => {
                        let msg = format!("{phones} phones, {} broker, {what}: {e:#}", kind.name());
                        eprintln!("bench-fleet: FAILED {msg}");
                        failures.push(msg);
                    }
                }
            };
            let name = kind.name();
            let mut floor_wall = None;
            if args.wants(Measure::Floor) || args.wants(Measure::Rollout) {
                step("the rollout's raw MQTT floor", &mut || {
                    let s = s("floor")?;
                    let f = match kind {
                        BrokerKind::Embedded => {
                            let b = broker::BrokerProc::start(&s.dir, "127.0.0.1:0")?;
                            rollout_floor::run(&s, &b.url, b.pid())?
                        }
                        BrokerKind::Mosquitto => {
                            let b = BrokerRun::start(kind, &s.dir)?;
                            let (url, pid) = b.external().context("mosquitto's address")?;
                            rollout_floor::run(&s, url, pid)?
                        }
                    };
                    floor_wall = Some(f.wall.as_secs_f64());
                    Ok(floor_rows(phones, name, &f))
                });
            }
            if args.wants(Measure::Rollout) {
                step("rollout to simulated phones", &mut || {
                    let s = s("rollout")?;
                    let b = BrokerRun::start(kind, &s.dir)?;
                    let f = rollout::run(&s, &b)?;
                    Ok(rollout_rows(phones, name, &f, floor_wall))
                });
            }
            if args.wants(Measure::Ingest) {
                step("controller ingest and its floor", &mut || {
                    let fs = s("ingest-floor")?;
                    let floor = match kind {
                        BrokerKind::Embedded => {
                            let b = broker::BrokerProc::start(&fs.dir, "127.0.0.1:0")?;
                            ingest::floor(&fs, &b.url)?
                        }
                        BrokerKind::Mosquitto => {
                            let b = BrokerRun::start(kind, &fs.dir)?;
                            let (url, _) = b.external().context("mosquitto's address")?;
                            ingest::floor(&fs, url)?
                        }
                    };
                    let s = s("ingest")?;
                    let b = BrokerRun::start(kind, &s.dir)?;
                    let f = ingest::run(&s, &b)?;
                    Ok(ingest_rows(phones, name, &f, &floor))
                });
            }
            if args.wants(Measure::Storm) && kind == BrokerKind::Embedded {
                step("reconnect storm", &mut || {
                    let floor = storm::floor(&s("storm-floor")?)?;
                    let f = storm::run(&s("storm")?)?;
                    Ok(storm_rows(phones, name, &f, floor))
                });
            }
        }
    }

    if args.wants(Measure::Inventory) {
        let devices = args.inventory as usize;
        eprintln!("bench-fleet: a controller holding {devices} devices");
        let dir = run_dir.path().join(format!("inventory-{devices}"));
        let measured = std::fs::create_dir_all(&dir)
            .with_context(|| format!("make {}", dir.display()))
            .and_then(|()| inventory::run(rt.handle(), &dir, devices));
        match measured {
            Ok(f) => {
                let r = inventory_rows(&f);
                eprint!("{}", report::render(&r));
                rows.extend(r);
            }
            Err(e) => {
                let msg = format!("{devices} devices in the inventory: {e:#}");
                eprintln!("bench-fleet: FAILED {msg}");
                failures.push(msg);
            }
        }
    }

    let mut agent_table = None;
    if args.wants(Measure::Agent) {
        eprintln!("bench-fleet: the agent, with a {} GiB bind", args.agent_bind_gib);
        match agent::run(&args.agent, args.agent_bind_gib) {
            Ok(f) => {
                eprint!("{}", f.table);
                agent_table = Some(f);
            }
            Err(e) => {
                let msg = format!("the agent: {e:#}");
                eprintln!("bench-fleet: FAILED {msg}");
                failures.push(msg);
            }
        }
    }

    let command: Vec<String> = std::env::args().collect();
    println!();
    println!("bench-fleet, {started} UTC, {} cores, load average at start {}", cores(), load.trim());
    println!("command: {}", command.join(" "));
    println!("phones' state on {}; controllers' stores in {}", args.phone_state_root.display(), root.display());
    println!("lab mode: plain MQTT and HTTP, no TLS, no logins, in every rollout and every floor");
    println!();
    if !rows.is_empty() {
        print!("{}", report::render(&rows));
    }
    if let Some(f) = &agent_table {
        println!();
        println!("the agent ({}, every target {}):", args.agent.display(), if f.all_met { "met" } else { "NOT met" });
        print!("{}", f.table);
    }
    if !skipped.is_empty() || !failures.is_empty() {
        println!();
    }
    for s in &skipped {
        println!("not measured: {s}");
    }
    for f in &failures {
        println!("not measured: {f}");
    }
    if !failures.is_empty() {
        // Keep what the failed runs left for a look.
        let kept = run_dir.keep();
        println!("logs kept in {}", kept.display());
    }
    Ok(failures.is_empty() && skipped.is_empty())
}

fn floor_rows(phones: usize, broker: &'static str, f: &rollout_floor::FloorFigures) -> Vec<Row> {
    let wall = f.wall.as_secs_f64();
    vec![
        Row::new("floor: rollout traffic, raw MQTT", phones, broker, secs(wall), Against::Nothing),
        Row::new("floor: phones per second", phones, broker, per_sec(phones as f64 / wall), Against::Nothing),
        Row::new("floor: broker CPU", phones, broker, secs(f.broker_cpu), Against::Nothing),
        Row::new("floor: raw clients' CPU", phones, broker, secs(f.clients_cpu), Against::Nothing),
    ]
}

fn rollout_rows(phones: usize, broker: &'static str, f: &rollout::RolloutFigures, floor: Option<f64>) -> Vec<Row> {
    let wall = f.wall.as_secs_f64().max(0.001);
    let rate = phones as f64 / wall;
    let against_floor = match floor {
        Some(fl) => Against::Floor { floor: secs(fl), ratio: wall / fl, max: ROLLOUT_MAX_FLOOR_RATIO },
        None => Against::Nothing,
    };
    let target = Against::Target { target: per_sec(ROLLOUT_MIN_RATE), ratio: rate / ROLLOUT_MIN_RATE, at_least: true };
    let mut rows = vec![
        Row::new("rollout: start to last final outcome", phones, broker, secs(wall), against_floor),
        Row::new("rollout: phones updated per second", phones, broker, per_sec(rate), target),
        Row::new(
            "rollout: create .. status --wait (CLI)",
            phones,
            broker,
            secs(f.cli_wall.as_secs_f64()),
            Against::Nothing,
        ),
        Row::new("rollout: controller CPU", phones, broker, secs(f.controller_cpu), Against::Nothing),
        Row::new(
            "rollout: controller CPU per phone",
            phones,
            broker,
            format!("{:.2} ms", f.controller_cpu * 1000.0 / phones.max(1) as f64),
            Against::Nothing,
        ),
        Row::new("rollout: controller peak RSS", phones, broker, mib(f.controller_peak_kib), Against::Nothing),
        Row::new("rollout: simulator CPU", phones, broker, secs(f.simulator_cpu), Against::Nothing),
        Row::new(
            "rollout: simulator RSS per phone",
            phones,
            broker,
            kib(f.simulator_rss_kib as f64 / phones.max(1) as f64),
            Against::Nothing,
        ),
    ];
    if f.shown_offline > 0 {
        let n = report::thousands(f.shown_offline as f64);
        rows.push(Row::new("rollout: phones shown offline at its start", phones, broker, n, Against::Nothing));
    }
    if let Some(cpu) = f.broker_cpu {
        rows.push(Row::new("rollout: broker CPU", phones, broker, secs(cpu), Against::Nothing));
    }
    rows
}

fn ingest_rows(phones: usize, broker: &'static str, f: &ingest::IngestFigures, floor: &ingest::Floor) -> Vec<Row> {
    let target = Against::Target {
        target: per_sec(INGEST_MIN_RATE),
        ratio: f.reports_per_sec / INGEST_MIN_RATE,
        at_least: true,
    };
    let flushes = format!("{} x {:.1} ms", report::thousands(f.flushes), f.flush_secs * 1000.0);
    let mut rows = vec![
        Row::new(
            "ingest floor: final reports acked, raw MQTT",
            phones,
            broker,
            per_sec(floor.reports_per_sec),
            Against::Nothing,
        ),
        Row::new("ingest: final reports acked (durable)", phones, broker, per_sec(f.reports_per_sec), target),
        Row::new("ingest: controller CPU", phones, broker, secs(f.controller_cpu), Against::Nothing),
        Row::new("ingest: store flushes x mean time", phones, broker, flushes, Against::Nothing),
        Row::new("ingest: inputs per core batch", phones, broker, format!("{:.0}", f.batch_inputs), Against::Nothing),
        Row::new("ingest: update commands out", phones, broker, per_sec(f.commands_per_sec), Against::Nothing),
    ];
    // A report sent again waited for the retry: its ack (or the report) was lost on the way.
    for (what, n) in
        [("ingest floor: final reports sent again", floor.resent), ("ingest: final reports sent again", f.resent)]
    {
        if n > 0 {
            rows.push(Row::new(what, phones, broker, report::thousands(n as f64), Against::Nothing));
        }
    }
    rows
}

fn storm_rows(phones: usize, broker: &'static str, f: &storm::StormFigures, floor: Duration) -> Vec<Row> {
    let fl = floor.as_secs_f64().max(0.001);
    let against =
        |d: Duration| Against::Floor { floor: secs(fl), ratio: d.as_secs_f64() / fl, max: STORM_MAX_FLOOR_RATIO };
    vec![
        Row::new("storm floor: hellos answered, raw MQTT", phones, broker, secs(fl), Against::Nothing),
        Row::new(
            "storm: every pending command out",
            phones,
            broker,
            secs(f.commands_out.as_secs_f64()),
            against(f.commands_out),
        ),
        Row::new("storm: controller idle again", phones, broker, secs(f.idle.as_secs_f64()), against(f.idle)),
        Row::new("storm: controller CPU, its start included", phones, broker, secs(f.controller_cpu), Against::Nothing),
    ]
}

fn inventory_rows(f: &inventory::InventoryFigures) -> Vec<Row> {
    let n = f.devices;
    let b = "-";
    let at_most = |measured: f64, target: f64, shown: String| Against::Target {
        target: shown,
        ratio: measured / target,
        at_least: false,
    };
    let s = |d: Duration| d.as_secs_f64();
    let peak_mib = f.peak_kib as f64 / 1024.0;
    vec![
        Row::new("inventory: writing the store (bench)", n, b, secs(s(f.seed)), Against::Nothing),
        Row::new("inventory: store on disk", n, b, mib(f.disk_bytes / 1024), Against::Nothing),
        Row::new(
            "inventory: start-up, store restored",
            n,
            b,
            secs(s(f.start_up)),
            at_most(s(f.start_up), INVENTORY_MAX_START_SECS, secs(INVENTORY_MAX_START_SECS)),
        ),
        Row::new("inventory: controller RSS after start-up", n, b, mib(f.rss_after_start_kib), Against::Nothing),
        Row::new(
            "inventory: rollout plan --all (CLI)",
            n,
            b,
            secs(s(f.plan)),
            at_most(s(f.plan), INVENTORY_MAX_PLAN_SECS, secs(INVENTORY_MAX_PLAN_SECS)),
        ),
        Row::new("inventory: rollout create --all (CLI)", n, b, secs(s(f.create)), Against::Nothing),
        Row::new("inventory: rollout status (CLI)", n, b, secs(s(f.status)), Against::Nothing),
        Row::new(
            "inventory: GET /metrics",
            n,
            b,
            format!("{} ({} KiB)", secs(s(f.metrics)), f.metrics_bytes / 1024),
            Against::Nothing,
        ),
        Row::new(
            "inventory: controller peak RSS",
            n,
            b,
            mib(f.peak_kib),
            at_most(peak_mib, INVENTORY_MAX_RSS_MIB, "1 GiB".to_string()),
        ),
    ]
}

/// Why this many phones cannot run on this machine, if they cannot: each end of every phone's connection
/// is a descriptor in one process (the broker's, and the simulator's or the bench's).
fn too_big(phones: usize) -> Option<String> {
    let limit = procs::open_files_hard_limit()?;
    (phones as u64 + DESCRIPTOR_RESERVE > limit).then(|| {
        format!(
            "{phones} phones need {phones} sockets in one process (the broker's), and this machine allows {limit} \
             open files per process (ulimit -Hn); at most {} phones fit",
            limit.saturating_sub(DESCRIPTOR_RESERVE)
        )
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn now_utc() -> String {
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    bindwave_controller::cli::rollout::time(ms)
}
