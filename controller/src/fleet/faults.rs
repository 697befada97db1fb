//! Which simulated phones misbehave, and how: a fault mix drawn from a seed, pure.
//!
//! Each fault takes a share of the fleet (`2%`, or a count, `3`), rounded to whole phones. The phones are ranked
//! by a hash of the seed and their index (SplitMix64), and the faults take turns down that ranking in a fixed
//! order, so the sets are disjoint, exact in size, and the same for the same seed on every build. A phone's
//! fault depends only on the seed, its index and the mix: adding phones to a fleet moves few of them.

use std::fmt;
use std::str::FromStr;

/// A share of the fleet: a percentage, or a number of phones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    Percent(f64),
    Count(usize),
}

impl Share {
    pub const NONE: Share = Share::Count(0);

    /// How many of `n` phones, rounded to the nearest whole phone, at most `n`.
    pub fn of(self, n: usize) -> usize {
        match self {
            Share::Percent(p) => ((p / 100.0 * n as f64).round() as usize).min(n),
            Share::Count(c) => c.min(n),
        }
    }
}

impl FromStr for Share {
    type Err = String;

    fn from_str(s: &str) -> Result<Share, String> {
        let s = s.trim();
        let bad =
            || format!("{s:?} is not a share of the fleet: write a percentage (2%, 0.5%) or a number of phones (3)");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(Share::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(Share::Count).map_err(|_| bad()),
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Share::Percent(p) => write!(f, "{p}%"),
            Share::Count(c) => write!(f, "{c}"),
        }
    }
}

/// Where a phone that crashes mid-update loses power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Once its download has shown progress (10% or more), or at the latest when it verifies or installs.
    Download,
    /// When it starts installing.
    Install,
}

/// What goes wrong on one simulated phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Its installer fails, so every install it tries is reported `failed` (`install_failed`).
    FailInstall,
    /// It drops off the network (no goodbye: the broker publishes its last will) a while after it starts.
    Offline,
    /// Its downloads are throttled.
    SlowDownload,
    /// It loses power mid-update, once, and starts again on the same state.
    CrashMidUpdate(CrashPoint),
}

/// The share of the fleet each fault takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    pub fail_install: Share,
    pub offline: Share,
    pub slow_download: Share,
    pub crash_mid_update: Share,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            fail_install: Share::NONE,
            offline: Share::NONE,
            slow_download: Share::NONE,
            crash_mid_update: Share::NONE,
        }
    }
}

/// The phones of each fault, by index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assigned {
    pub fail_install: Vec<usize>,
    pub offline: Vec<usize>,
    pub slow_download: Vec<usize>,
    pub crash_mid_update: Vec<usize>,
}

/// Each of `n` phones' fault, if any, under `mix` and `seed`. Fails when the shares add up to more than the
/// fleet.
pub fn assign(n: usize, mix: &Mix, seed: u64) -> Result<Vec<Option<Fault>>, String> {
    let counts = [mix.fail_install.of(n), mix.offline.of(n), mix.slow_download.of(n), mix.crash_mid_update.of(n)];
    let total: usize = counts.iter().sum();
    if total > n {
        return Err(format!(
            "the faults take {total} phones ({} failing installs, {} offline, {} slow, {} crashing) of {n}: lower a share",
            counts[0], counts[1], counts[2], counts[3]
        ));
    }
    let mut ranked: Vec<usize> = (0..n).collect();
    ranked.sort_by_key(|&i| (rank(seed, i), i));
    let mut faults = vec![None; n];
    let mut next = ranked.into_iter();
    for (kind, count) in counts.into_iter().enumerate() {
        for (k, i) in next.by_ref().take(count).enumerate() {
            faults[i] = Some(match kind {
                0 => Fault::FailInstall,
                1 => Fault::Offline,
                2 => Fault::SlowDownload,
                // Half lose power mid-download, half mid-install.
                _ if k % 2 == 0 => Fault::CrashMidUpdate(CrashPoint::Download),
                _ => Fault::CrashMidUpdate(CrashPoint::Install),
            });
        }
    }
    Ok(faults)
}

/// The phones of each fault, for printing and for `faults.json`.
pub fn by_fault(faults: &[Option<Fault>]) -> Assigned {
    let mut a = Assigned::default();
    for (i, f) in faults.iter().enumerate() {
        match f {
            Some(Fault::FailInstall) => a.fail_install.push(i),
            Some(Fault::Offline) => a.offline.push(i),
            Some(Fault::SlowDownload) => a.slow_download.push(i),
            Some(Fault::CrashMidUpdate(_)) => a.crash_mid_update.push(i),
            None => {}
        }
    }
    a
}

/// A phone's place in the draw: SplitMix64 of the seed mixed with its index.
fn rank(seed: u64, index: usize) -> u64 {
    let mut z = seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(fail: &str, offline: &str, slow: &str, crash: &str) -> Mix {
        Mix {
            fail_install: fail.parse().unwrap(),
            offline: offline.parse().unwrap(),
            slow_download: slow.parse().unwrap(),
            crash_mid_update: crash.parse().unwrap(),
        }
    }

    #[test]
    fn shares_are_percentages_or_counts() {
        assert_eq!("2%".parse::<Share>().unwrap().of(10_000), 200);
        assert_eq!("0.5%".parse::<Share>().unwrap().of(1000), 5);
        assert_eq!("3".parse::<Share>().unwrap().of(1000), 3);
        assert_eq!("1%".parse::<Share>().unwrap().of(10), 0, "rounded to whole phones");
        assert_eq!("50".parse::<Share>().unwrap().of(10), 10, "never more than the fleet");
        for bad in ["", "x%", "-1%", "101%", "2 percent", "-3"] {
            let e = bad.parse::<Share>().unwrap_err();
            assert!(e.contains("percentage") && e.contains("number of phones"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_mix_is_exact_disjoint_and_the_same_for_the_same_seed() {
        let m = mix("2%", "1%", "5%", "1%");
        let faults = assign(10_000, &m, 7).unwrap();
        let a = by_fault(&faults);
        assert_eq!(
            (a.fail_install.len(), a.offline.len(), a.slow_download.len(), a.crash_mid_update.len()),
            (200, 100, 500, 100)
        );
        assert_eq!(faults.iter().filter(|f| f.is_none()).count(), 10_000 - 900);
        let crash_at = |p| faults.iter().filter(|f| **f == Some(Fault::CrashMidUpdate(p))).count();
        assert_eq!((crash_at(CrashPoint::Download), crash_at(CrashPoint::Install)), (50, 50));
        assert_eq!(assign(10_000, &m, 7).unwrap(), faults, "deterministic");
        assert_ne!(assign(10_000, &m, 8).unwrap(), faults, "another seed, another draw");
        // Spread over the fleet, not its first phones.
        assert!(a.fail_install.iter().any(|&i| i > 5000) && a.fail_install.iter().any(|&i| i < 5000));
    }

    #[test]
    fn a_larger_fleet_keeps_most_phones_faults() {
        let m = mix("10", "0", "0", "0");
        let small = by_fault(&assign(100, &m, 1).unwrap()).fail_install;
        let large = by_fault(&assign(101, &m, 1).unwrap()).fail_install;
        assert!(small.iter().filter(|i| large.contains(i)).count() >= 9, "{small:?} {large:?}");
    }

    #[test]
    fn shares_over_the_fleet_are_refused() {
        let e = assign(10, &mix("50%", "30%", "30%", "0"), 1).unwrap_err();
        assert!(e.contains("11 phones") && e.contains("of 10"), "{e}");
        assert!(assign(0, &mix("2%", "1%", "0", "0"), 1).unwrap().is_empty());
    }
}
