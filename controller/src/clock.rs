//! The controller's clock, read by the service and the API only: the engine is handed the time.
//!
//! Soaks, device time limits and liveness are durations, and a wall clock that jumps (an operator's `date`, a
//! VM resumed, a first NTP sync) must not end them early or stretch them without end. So the controller's
//! time is the wall clock read once, when it starts, carried forward by the monotonic clock; and never earlier
//! than the last time the store recorded ([`not_before`]), so that it does not run backwards across a restart
//! either. A jump of the wall clock while the controller runs is measured ([`step`]) and reported, and taken
//! up at its next start. What the phones compare with their own clocks (a command's expiry) counts from the
//! later of the two ([`wall_millis`]): after a jump either may be the true one.
//!
//! A forward jump while the controller is stopped cannot be told from the time it was stopped, and counts as
//! elapsed, as that time does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::model::Millis;

/// The wall clock read once, the monotonic clock read with it, and how far [`Clock::not_before`] moved the time.
struct Clock {
    wall: Millis,
    at: Instant,
    ahead: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock { wall: wall_millis(), at: Instant::now(), ahead: AtomicU64::new(0) }
    }

    fn now(&self) -> Millis {
        let elapsed = u64::try_from(self.at.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.wall.saturating_add(elapsed).saturating_add(self.ahead.load(Ordering::Relaxed))
    }

    fn not_before(&self, floor: Millis) -> Millis {
        let behind = floor.saturating_sub(self.now());
        if behind > 0 {
            self.ahead.fetch_add(behind, Ordering::Relaxed);
        }
        behind
    }

    fn step(&self) -> i64 {
        let (wall, now) = (wall_millis(), self.now());
        if wall >= now {
            i64::try_from(wall - now).unwrap_or(i64::MAX)
        } else {
            i64::try_from(now - wall).map_or(i64::MIN, |d| -d)
        }
    }
}

static CLOCK: OnceLock<Clock> = OnceLock::new();

fn clock() -> &'static Clock {
    CLOCK.get_or_init(Clock::new)
}

/// The controller's time, in milliseconds since the Unix epoch: steady whatever the wall clock does.
pub fn now_millis() -> Millis {
    clock().now()
}

/// The wall clock as it is now, in milliseconds since the Unix epoch (0 if it is set before it).
pub fn wall_millis() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Moves the controller's time forward to `floor` if it is behind it: the store's last recorded time, read at
/// start-up, so that a wall clock set back while the controller was stopped does not set its time back.
/// Returns how far it moved, in milliseconds.
pub fn not_before(floor: Millis) -> Millis {
    clock().not_before(floor)
}

/// How far the wall clock is from the controller's time, in milliseconds (positive: the wall clock is ahead).
/// The monotonic clock follows the wall clock's rate, so anything beyond a few milliseconds is a jump.
pub fn step() -> i64 {
    clock().step()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_runs_on_and_is_never_set_back() {
        let clock = Clock::new();
        let before = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let after = clock.now();
        assert!(after >= before + 20, "{before} then {after}");
        assert!(clock.step().abs() < 1_000, "no jump yet: {}", clock.step());
        // A floor ahead of now moves the time up to it, and not back afterwards.
        let ahead = after + 60_000;
        assert!(clock.not_before(ahead) >= 59_000);
        assert!(clock.now() >= ahead);
        assert_eq!(clock.not_before(after), 0, "a floor behind does not set the time back");
        assert!(clock.step() <= -59_000, "the wall clock is now a minute behind the controller's: {}", clock.step());
    }
}
