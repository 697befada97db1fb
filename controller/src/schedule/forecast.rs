//! When a plan's waves are expected to start and end, given their windows, rate, concurrency limit and soak:
//! the dispatch rules played forward in time, with every phone taking an assumed time from its command to its
//! outcome (and, with install windows, that long again from its window's opening) and every gate passing. An
//! estimate: it says when the rules let things happen, not how the fleet will answer.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use super::{openness, Openness, Pace, Window};
use crate::model::{Millis, Schedule};

/// One wave as the forecast sees it.
pub struct WaveInput<'a> {
    /// Devices per time zone (one entry, any zone, for a wave without windows).
    pub lanes: Vec<(TimeZone, usize)>,
    pub schedule: &'a Schedule,
    pub max_concurrent: Option<usize>,
    pub soak: Millis,
}

/// When a wave is expected to start (its first command) and end (its last outcome); `None`: its windows do
/// not open within the forecast's reach (a year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaveTiming {
    pub starts: Option<Millis>,
    pub ends: Option<Millis>,
}

/// How far a forecast looks.
const REACH: Millis = 366 * 24 * 3600 * 1000;

/// Plays the waves forward from `start`, each phone taking `job` ms; a wave starts after the one before has
/// ended and soaked. Once a wave cannot end, the ones after it cannot start.
pub fn forecast(waves: &[WaveInput<'_>], start: Millis, job: Millis) -> Vec<WaveTiming> {
    let mut ready = Some(start);
    waves
        .iter()
        .map(|w| {
            let timing = match ready {
                Some(at) => wave(w, at, job),
                None => WaveTiming { starts: None, ends: None },
            };
            ready = timing.ends.map(|e| e.saturating_add(w.soak));
            timing
        })
        .collect()
}

fn wave(w: &WaveInput<'_>, ready: Millis, job: Millis) -> WaveTiming {
    let limit = w.max_concurrent.unwrap_or(usize::MAX);
    let (rate, ramp) = (w.schedule.rate, w.schedule.ramp);
    let installs = w.schedule.installs_in();
    let mut left: Vec<usize> = w.lanes.iter().map(|(_, n)| *n).collect();
    // Commands holding a place in the limit, by when they free it.
    let mut busy: BTreeMap<Millis, usize> = BTreeMap::new();
    let mut pace = Pace::default();
    let (mut starts, mut ends) = (None, ready);
    let mut t = ready;
    while left.iter().any(|n| *n > 0) {
        while let Some((&at, _)) = busy.first_key_value().filter(|(at, _)| **at <= t) {
            busy.remove(&at);
        }
        let mut next: Option<Millis> = None;
        let mut soonest = |at: Millis| next = Some(next.map_or(at, |n: Millis| n.min(at)));
        for (lane, (tz, _)) in w.lanes.iter().enumerate() {
            if left[lane] == 0 {
                continue;
            }
            if !w.schedule.windows.is_empty() {
                match openness(&w.schedule.windows, tz, t) {
                    Openness::Open { .. } => {}
                    Openness::Closed { until: Some(at) } => {
                        soonest(at);
                        continue;
                    }
                    Openness::Closed { until: None } => return WaveTiming { starts, ends: None },
                }
            }
            let in_flight: usize = busy.values().sum();
            let mut room = limit.saturating_sub(in_flight).min(left[lane]);
            if rate.is_none() && ramp.is_none() {
                // No pace: the whole room goes at once.
                send(&mut busy, &mut ends, installs, tz, t, job, room);
                left[lane] -= room;
                starts.get_or_insert(t);
                room = 0;
            }
            while room > 0 && pace.ready(t) {
                pace.sent(t, rate, ramp);
                send(&mut busy, &mut ends, installs, tz, t, job, 1);
                left[lane] -= 1;
                starts.get_or_insert(t);
                room -= 1;
            }
            if left[lane] > 0 {
                if busy.values().sum::<usize>() >= limit {
                    soonest(*busy.keys().next().unwrap_or(&t));
                } else {
                    soonest(pace.next_at());
                }
            }
        }
        if left.iter().all(|n| *n == 0) {
            break;
        }
        match next {
            Some(at) if at > t && at <= ready.saturating_add(REACH) => t = at,
            _ => return WaveTiming { starts, ends: None },
        }
    }
    WaveTiming { starts: starts.or(Some(ready)), ends: Some(ends) }
}

/// `n` commands at `t`: each holds its place until downloaded (`job` later), and ends then, or, where its install
/// window is closed by then, `job` after it opens.
fn send(
    busy: &mut BTreeMap<Millis, usize>,
    ends: &mut Millis,
    installs: &[Window],
    tz: &TimeZone,
    t: Millis,
    job: Millis,
    n: usize,
) {
    if n == 0 {
        return;
    }
    let downloaded = t.saturating_add(job);
    *busy.entry(downloaded).or_default() += n;
    // Installed as downloaded, or, where its install window is closed by then, `job` after it opens.
    let done = match installs.is_empty() {
        true => downloaded,
        false => match openness(installs, tz, downloaded) {
            Openness::Open { .. } | Openness::Closed { until: None } => downloaded,
            Openness::Closed { until: Some(at) } => at.saturating_add(job),
        },
    };
    *ends = (*ends).max(done);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn t(s: &str) -> Millis {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as Millis
    }

    fn schedule(windows: &[&str], install: &[&str], rate: Option<&str>) -> Schedule {
        Schedule {
            windows: windows.iter().map(|w| w.parse().unwrap()).collect(),
            install_windows: install.iter().map(|w| w.parse().unwrap()).collect(),
            rate: rate.map(|r| r.parse().unwrap()),
            ramp: None,
        }
    }

    #[test]
    fn a_wave_without_limits_ends_one_job_after_it_starts_and_the_next_waits_for_its_soak() {
        let s = Schedule::default();
        let waves = [
            WaveInput { lanes: vec![(TimeZone::UTC, 10)], schedule: &s, max_concurrent: None, soak: 30 * MIN },
            WaveInput { lanes: vec![(TimeZone::UTC, 90)], schedule: &s, max_concurrent: Some(30), soak: 0 },
        ];
        let f = forecast(&waves, 0, 10 * MIN);
        assert_eq!(f[0], WaveTiming { starts: Some(0), ends: Some(10 * MIN) });
        assert_eq!(f[1], WaveTiming { starts: Some(40 * MIN), ends: Some(70 * MIN) }, "three rounds of 30");
    }

    #[test]
    fn windows_in_two_zones_and_a_rate() {
        let s = schedule(&["daily 01:00-05:00"], &[], Some("6/h"));
        let berlin = crate::schedule::zone("Europe/Berlin").unwrap();
        let lanes = vec![(berlin, 3), (TimeZone::UTC, 3)];
        let waves = [WaveInput { lanes, schedule: &s, max_concurrent: None, soak: 0 }];
        let f = forecast(&waves, t("2026-12-07T12:00:00Z"), 5 * MIN);
        // Berlin opens at 00:00 UTC: 00:00, 00:10, 00:20; then UTC's at 01:00: 01:00, 01:10, 01:20 (+5 min).
        assert_eq!(f[0], WaveTiming { starts: Some(t("2026-12-08T00:00:00Z")), ends: Some(t("2026-12-08T01:25:00Z")) });
    }

    #[test]
    fn an_install_window_ends_the_wave_when_it_has_opened_and_the_phones_installed() {
        let s = schedule(&[], &["daily 22:00-05:00"], None);
        let waves = [WaveInput { lanes: vec![(TimeZone::UTC, 5)], schedule: &s, max_concurrent: None, soak: 0 }];
        let f = forecast(&waves, t("2026-12-07T12:00:00Z"), 10 * MIN);
        assert_eq!(f[0], WaveTiming { starts: Some(t("2026-12-07T12:00:00Z")), ends: Some(t("2026-12-07T22:10:00Z")) });
    }

    #[test]
    fn a_rate_too_slow_for_the_window_carries_on_the_next_night_and_a_later_wave_follows() {
        let s = schedule(&["daily 01:00-02:00"], &[], Some("2/h"));
        let waves = [
            WaveInput { lanes: vec![(TimeZone::UTC, 3)], schedule: &s, max_concurrent: None, soak: 0 },
            WaveInput { lanes: vec![(TimeZone::UTC, 1)], schedule: &s, max_concurrent: None, soak: 0 },
        ];
        let f = forecast(&waves, t("2026-12-07T00:00:00Z"), MIN);
        assert_eq!(f[0].ends, Some(t("2026-12-08T01:01:00Z")), "01:00, 01:30, then the next night: {f:?}");
        assert_eq!(f[1].starts, Some(t("2026-12-08T01:01:00Z")), "at once, with a pace of its own: {f:?}");
    }
}
