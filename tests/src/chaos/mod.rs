//! The chaos suite's parts (`tests/tests/chaos.rs`): how big a run is, the faults' dice, a download server that
//! misbehaves on purpose ([`proxy`]), and the checks every run ends with ([`checks`]).
//!
//! `BINDWAVE_CHAOS=full` runs the suite at the size RELIABILITY.md reports (1,000 phones, 20 controller
//! SIGKILLs, ...); without it, each scenario runs at the bounded size CI has time for. `tests/chaos.sh` runs the
//! full suite and prints its report lines.

pub mod checks;
pub mod proxy;
pub mod watch;

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Simulated phones in each scenario.
    pub phones: usize,
    /// SIGKILLs of the controller during one rollout.
    pub controller_kills: usize,
    /// Restarts of Mosquitto during one rollout.
    pub broker_restarts: usize,
    /// Real `bindwave-agent` processes beside the simulated phones.
    pub real_agents: usize,
    /// SIGKILLs of each real agent during its update.
    pub agent_kills: usize,
    /// Whether this is the full suite.
    pub full: bool,
}

impl Scale {
    /// `BINDWAVE_CHAOS=full`, or the bounded size.
    pub fn from_env() -> Scale {
        if std::env::var("BINDWAVE_CHAOS").is_ok_and(|v| v == "full") {
            Scale {
                phones: 1000,
                controller_kills: 20,
                broker_restarts: 4,
                real_agents: 12,
                agent_kills: 3,
                full: true,
            }
        } else {
            Scale { phones: 200, controller_kills: 5, broker_restarts: 2, real_agents: 4, agent_kills: 2, full: false }
        }
    }
}

/// The faults' dice: a fixed seed per scenario, so that a failing run can be run again as it was.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Dice {
        Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n` (xorshift64*).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    /// A duration between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> std::time::Duration {
        std::time::Duration::from_millis(lo + self.below(hi.saturating_sub(lo) + 1))
    }
}

/// One line of the suite's report, printed for `tests/chaos.sh` to collect.
pub fn report(scenario: &str, line: &str) {
    eprintln!("chaos: {scenario}: {line}");
}
