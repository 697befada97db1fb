//! What a simulated phone costs in memory: the process's resident set (`/proc/self/status`) above what it was
//! before the fleet started, divided among the phones; and the allocator settings that keep it small.
//!
//! The process allocates with jemalloc (`main.rs`), which keeps what is freed for reuse and hands it back to
//! the system from its background threads, after a delay. A rollout's burst (a download buffer per phone) would
//! still be resident at the next reading, so the simulator purges every arena before each one
//! ([`release_freed`]): a reading is what the phones hold, not what the allocator keeps in hand.

use std::time::Duration;

/// The process's resident memory, in KiB: now (`VmRSS`) and at its highest (`VmHWM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    pub now_kib: u64,
    pub peak_kib: u64,
}

impl Resident {
    /// This process's, or `None` where `/proc` does not tell.
    pub fn of_this_process() -> Option<Resident> {
        parse(&std::fs::read_to_string("/proc/self/status").ok()?)
    }
}

/// `VmRSS` and `VmHWM` from the text of `/proc/<pid>/status`. Pure.
pub fn parse(status: &str) -> Option<Resident> {
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some(Resident { now_kib: field("VmRSS:")?, peak_kib: field("VmHWM:")? })
}

/// One line about the fleet's memory: the resident set now and at its peak, and each above `before` (the
/// process before the fleet started) divided among `phones`. Pure.
pub fn line(before: Resident, now: Resident, phones: usize) -> String {
    let n = phones.max(1) as f64;
    let each = |kib: u64| kib.saturating_sub(before.now_kib) as f64 / n;
    format!(
        "memory: {:.1} KiB a phone now, {:.1} KiB at the peak ({phones} phones; resident {:.1} MiB, peak {:.1} MiB, \
         {:.1} MiB before the phones started)",
        each(now.now_kib),
        each(now.peak_kib),
        now.now_kib as f64 / 1024.0,
        now.peak_kib as f64 / 1024.0,
        before.now_kib as f64 / 1024.0,
    )
}

/// Hands the pages jemalloc holds free back to the system: `arena.<MALLCTL_ARENAS_ALL>.purge`. Where the
/// process runs another allocator, this asks nothing of it.
pub fn release_freed() {
    #[cfg(not(target_env = "msvc"))]
    // SAFETY: a documented mallctl that takes and gives no value (all pointers null); jemalloc only purges
    // unused pages. Its result says nothing a reading needs.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

/// Prints [`line`] to stderr every `every`, when the resident set moved by more than 1% since the last line
/// printed (and once at the first reading), until dropped.
pub fn report(before: Resident, phones: usize, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<u64> = None;
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            release_freed();
            let Some(now) = Resident::of_this_process() else { return };
            if last.is_none_or(|l| now.now_kib.abs_diff(l) * 100 > l) {
                eprintln!("{}", line(before, now, phones));
                last = Some(now.now_kib);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_set_is_read_from_proc_status() {
        let status = "Name:\tbindwave\nVmPeak:\t 900 kB\nVmHWM:\t  548224 kB\nVmRSS:\t  300000 kB\nThreads:\t4\n";
        assert_eq!(parse(status), Some(Resident { now_kib: 300_000, peak_kib: 548_224 }));
        assert_eq!(parse("Name:\tx\n"), None);
        assert!(Resident::of_this_process().is_some_and(|r| r.now_kib > 0 && r.peak_kib >= r.now_kib));
    }

    #[test]
    fn each_phone_gets_its_share_of_what_the_fleet_added() {
        let before = Resident { now_kib: 16_000, peak_kib: 16_000 };
        let now = Resident { now_kib: 16_000 + 300_000, peak_kib: 16_000 + 500_000 };
        let l = line(before, now, 10_000);
        assert!(l.starts_with("memory: 30.0 KiB a phone now, 50.0 KiB at the peak (10000 phones;"), "{l}");
    }
}
