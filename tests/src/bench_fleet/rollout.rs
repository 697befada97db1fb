//! A rollout to N simulated phones, as a new user runs it: `bindwave serve` in lab mode, `bindwave simulate`,
//! a 4 KiB bind packed and added with `bindwave image`, and `bindwave rollout create ... --start` followed by
//! `bindwave rollout status --wait`, in three waves (1 %, 10 %, 100 %) with no soak.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bindwave_controller::api::RolloutStatus;
use bindwave_controller::model::{Outcome, RolloutState};

use super::controller::Controller;
use super::procs::{self, CpuMark};
use super::{simulator, BrokerRun, Scenario};

/// The rollout's waves, cumulative, as `--waves` takes them.
pub const WAVES: &str = "1%,10%,100%";
/// The same, as the floor takes them.
pub const WAVE_PERCENTS: [f64; 3] = [1.0, 10.0, 100.0];

#[derive(Debug, Clone)]
pub struct RolloutFigures {
    /// From the rollout's start to its last final outcome, by the controller's clock.
    pub wall: Duration,
    /// From `rollout create` to `rollout status --wait` returning, by the bench's clock.
    pub cli_wall: Duration,
    pub controller_cpu: f64,
    pub controller_peak_kib: u64,
    pub simulator_cpu: f64,
    pub simulator_rss_kib: u64,
    /// Phones the controller showed offline when the rollout started, though connected (see BENCHMARKS.md).
    pub shown_offline: usize,
    /// The external broker's CPU seconds over the rollout (none for the embedded one).
    pub broker_cpu: Option<f64>,
}

pub fn run(s: &Scenario, broker: &BrokerRun) -> Result<RolloutFigures> {
    let phones = s.phones;
    let data_dir = s.dir.join("controller-data");
    let c = Controller::start(&s.dir, &data_dir, &broker.mqtt)?;
    let sha = c.add_bind(&s.dir)?;
    let state = tempfile::Builder::new()
        .prefix("bench-fleet-phones-")
        .tempdir_in(&s.phone_state_root)
        .with_context(|| format!("make a state directory under {}", s.phone_state_root.display()))?;
    let mut sim = simulator::start(&s.dir, phones, &c.mqtt, state.path(), &data_dir.join("controller.key.pub"))?;
    let online = c
        .wait_fleet(phones, s.limit() + Duration::from_secs(60))
        .with_context(|| format!("the simulator's log: {}", sim.log.display()))?;
    // Each agent subscribes before its hello; let the last subscriptions settle.
    std::thread::sleep(Duration::from_secs(1));
    if !sim.alive() {
        bail!("the simulator exited; its log {}:\n{}", sim.log.display(), procs::tail(&sim.log_text()));
    }

    let (ctl_cpu, sim_cpu) = (CpuMark::now(c.pid()), CpuMark::now(sim.pid()));
    let broker_cpu = broker.pid.map(CpuMark::now);
    let started = Instant::now();
    let id = c.cli(&["rollout", "create", "--image", &sha, "--all", "--waves", WAVES, "--start"])?;
    let text = c.cli(&["rollout", "status", &id, "--wait", "-o", "json"])?;
    let cli_wall = started.elapsed();
    let (controller_cpu, simulator_cpu) = (ctl_cpu.spent(), sim_cpu.spent());
    let broker_cpu = broker_cpu.map(|m| m.spent());

    let status: RolloutStatus = serde_json::from_str(&text).context("the rollout's status JSON")?;
    let succeeded = status.counts.get(&Outcome::Succeeded).copied().unwrap_or(0);
    if !matches!(status.rollout.state, RolloutState::Finished) || succeeded != phones {
        bail!(
            "rollout {id} ended {:?} with {succeeded} of {phones} phones updated (counts {:?}); logs in {}",
            status.rollout.state,
            status.counts,
            s.dir.display()
        );
    }
    let start = status.rollout.started_at.context("the finished rollout has no start time")?;
    let last = status.jobs.iter().map(|j| j.updated_at).max().unwrap_or(start);
    let figures = RolloutFigures {
        wall: Duration::from_millis(last.saturating_sub(start)),
        cli_wall,
        controller_cpu,
        controller_peak_kib: bindwave_tests::measure::status_kib(c.pid(), "VmHWM:"),
        simulator_cpu,
        simulator_rss_kib: bindwave_tests::measure::status_kib(sim.pid(), "VmRSS:"),
        broker_cpu,
        shown_offline: phones.saturating_sub(online),
    };
    sim.kill();
    drop(c);
    Ok(figures)
}
