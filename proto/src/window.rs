//! When a phone may install: the install windows a command carries, as absolute times.
//!
//! The controller turns an operator's maintenance windows (`Mon-Fri 19:00-06:00`, in the phone's time zone)
//! into their next occurrences in Unix seconds, so that the phone needs no time-zone database and installs in
//! its own window even when it has lost the broker. A command with no windows installs at once.

use serde::{Deserialize, Serialize};

/// One occurrence of a window: an install may start at `from` or later, and before `until` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallWindow {
    pub from: u64,
    pub until: u64,
}

/// When an install may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallAt {
    /// Now: the command carries no windows, or one is open.
    Now,
    /// When the next window opens (Unix seconds).
    At(u64),
    /// Never: every window the command carried has passed (the last ended at `last_until`).
    Passed { last_until: u64 },
}

/// When an install may start at `now` (Unix seconds), given a command's windows. A window that ends before it
/// starts is no window.
pub fn install_at(windows: &[InstallWindow], now: u64) -> InstallAt {
    if windows.is_empty() {
        return InstallAt::Now;
    }
    let mut next: Option<u64> = None;
    for w in windows.iter().filter(|w| w.from < w.until && now < w.until) {
        if now >= w.from {
            return InstallAt::Now;
        }
        next = Some(next.map_or(w.from, |n: u64| n.min(w.from)));
    }
    match next {
        Some(at) => InstallAt::At(at),
        None => InstallAt::Passed { last_until: windows.iter().map(|w| w.until).max().unwrap_or(0) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(from: u64, until: u64) -> InstallWindow {
        InstallWindow { from, until }
    }

    #[test]
    fn an_install_waits_for_the_next_window_and_never_starts_after_the_last() {
        let windows = [w(300, 400), w(100, 200)];
        assert_eq!(install_at(&[], 5), InstallAt::Now);
        assert_eq!(install_at(&windows, 50), InstallAt::At(100));
        assert_eq!(install_at(&windows, 100), InstallAt::Now);
        assert_eq!(install_at(&windows, 199), InstallAt::Now);
        assert_eq!(install_at(&windows, 200), InstallAt::At(300), "a window's end is outside it");
        assert_eq!(install_at(&windows, 400), InstallAt::Passed { last_until: 400 });
        assert_eq!(install_at(&[w(10, 10), w(20, 5)], 0), InstallAt::Passed { last_until: 10 });
    }
}
