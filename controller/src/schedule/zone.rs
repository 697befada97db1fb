//! Where a rollout's weekly windows fall in a time zone's calendar: their occurrences as absolute times.
//!
//! A window's times are local wall-clock times. On the night a zone's clocks change, a local time that does not
//! exist (in the hour skipped in spring) is moved forward by the gap (02:30 becomes 03:30), and one that happens
//! twice (in the hour repeated in autumn) is its first occurrence (RFC 5545's rule, jiff's "compatible"): a night
//! window of 01:00-05:00 is three hours long when the clocks go forward and five when they go back. Zone rules are the
//! IANA database bundled into the controller, so a plan reads the same on every machine.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::window::{Window, DAY_MINUTES};
use crate::model::Millis;

/// A time zone by its IANA name, or why it is not one.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| {
        format!("{name:?} is not a time zone in the IANA database: use a name such as \"Europe/Berlin\" or \"UTC\"")
    })
}

/// The zone a lane or a device's windows are in: `name` (which the engine checked before queuing anything
/// under it), or UTC for a name the database does not know.
pub fn zone_or_utc(name: &str) -> TimeZone {
    zone(name).unwrap_or(TimeZone::UTC)
}

/// Whether windows are open at a moment, and until when that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Openness {
    /// Open until this moment (at least; a later occurrence may carry on from it).
    Open { until: Millis },
    /// Closed until this moment; `None`: no window opens within the look-ahead (eight days), so none ever will.
    Closed { until: Option<Millis> },
}

/// How far ahead windows are looked for: a week, and a day for a night that crosses a clock change.
pub const LOOK_AHEAD: Millis = 8 * 24 * 3600 * 1000;

/// Every occurrence of `windows` in `tz` that overlaps `[from, until)`, in order, overlapping ones merged.
pub fn occurrences(windows: &[Window], tz: &TimeZone, from: Millis, until: Millis) -> Vec<(Millis, Millis)> {
    let (Some(first), Some(last)) = (local_date(tz, from), local_date(tz, until)) else { return Vec::new() };
    let mut found = Vec::new();
    // From the day before `from`: an overnight window that opened then may still be open.
    let mut day = first.yesterday().unwrap_or(first);
    while day <= last {
        let weekday = day.weekday().to_monday_zero_offset() as u8;
        for w in windows.iter().filter(|w| w.opens_on(weekday)) {
            let (sh, sm) = w.start();
            let opens = at(tz, day, sh, sm);
            let end_day = if w.overnight() { day.tomorrow().ok() } else { Some(day) };
            let closes = end_day.and_then(|d| {
                let (eh, em) = w.end();
                if eh * 60 + em == DAY_MINUTES {
                    d.tomorrow().ok().and_then(|next| at(tz, next, 0, 0))
                } else {
                    at(tz, d, eh, em)
                }
            });
            if let (Some(o), Some(c)) = (opens, closes) {
                if o < c && c > from && o < until {
                    found.push((o, c));
                }
            }
        }
        let Ok(next) = day.tomorrow() else { break };
        day = next;
    }
    found.sort_unstable();
    let mut merged: Vec<(Millis, Millis)> = Vec::with_capacity(found.len());
    for (o, c) in found {
        match merged.last_mut() {
            Some((_, end)) if o <= *end => *end = (*end).max(c),
            _ => merged.push((o, c)),
        }
    }
    merged
}

/// Whether `windows` are open in `tz` at `now`, and until when.
pub fn openness(windows: &[Window], tz: &TimeZone, now: Millis) -> Openness {
    let horizon = now.saturating_add(LOOK_AHEAD);
    let found = occurrences(windows, tz, now, horizon);
    match found.iter().find(|(_, c)| *c > now) {
        Some((o, c)) if *o <= now => Openness::Open { until: *c },
        Some((o, _)) => Openness::Closed { until: Some(*o) },
        None => Openness::Closed { until: None },
    }
}

fn local_date(tz: &TimeZone, at: Millis) -> Option<Date> {
    let ts = Timestamp::from_millisecond(i64::try_from(at).ok()?).ok()?;
    Some(ts.to_zoned_datetime(tz.clone()).date())
}

/// The moment a local wall-clock time happens in `tz` (see the module doc for the nights clocks change).
fn at(tz: &TimeZone, day: Date, hour: u16, minute: u16) -> Option<Millis> {
    let local: DateTime = day.at(i8::try_from(hour).ok()?, i8::try_from(minute).ok()?, 0, 0);
    let zoned = tz.to_ambiguous_zoned_datetime(local).compatible().ok()?;
    u64::try_from(zoned.timestamp().as_millisecond()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Window {
        s.parse().unwrap()
    }

    /// Milliseconds of a UTC time written `2026-12-07T19:00:00Z`.
    fn t(s: &str) -> Millis {
        s.parse::<Timestamp>().unwrap().as_millisecond() as Millis
    }

    const HOUR: Millis = 3_600_000;

    #[test]
    fn a_weeknight_window_opens_on_weeknights_in_its_zone() {
        let berlin = zone("Europe/Berlin").unwrap();
        let nights = [w("Mon-Fri 19:00-06:00")];
        // Monday 2026-12-07 is in winter time, UTC+1: 19:00 local is 18:00 UTC.
        assert_eq!(
            openness(&nights, &berlin, t("2026-12-07T12:00:00Z")),
            Openness::Closed { until: Some(t("2026-12-07T18:00:00Z")) }
        );
        assert_eq!(
            openness(&nights, &berlin, t("2026-12-07T18:00:00Z")),
            Openness::Open { until: t("2026-12-08T05:00:00Z") }
        );
        // Friday night runs into Saturday; Saturday night does not open.
        assert_eq!(
            openness(&nights, &berlin, t("2026-12-12T04:59:00Z")),
            Openness::Open { until: t("2026-12-12T05:00:00Z") }
        );
        assert_eq!(
            openness(&nights, &berlin, t("2026-12-12T05:00:00Z")),
            Openness::Closed { until: Some(t("2026-12-14T18:00:00Z")) }
        );
    }

    #[test]
    fn the_weekend_joins_friday_night_into_one_window() {
        let utc = zone("UTC").unwrap();
        let windows = [w("Mon-Fri 19:00-06:00"), w("Sat,Sun 00:00-24:00")];
        let found = occurrences(&windows, &utc, t("2026-12-11T12:00:00Z"), t("2026-12-15T00:00:00Z"));
        assert_eq!(found[0], (t("2026-12-11T19:00:00Z"), t("2026-12-14T00:00:00Z")), "{found:?}");
        assert_eq!(found[1], (t("2026-12-14T19:00:00Z"), t("2026-12-15T06:00:00Z")), "{found:?}");
    }

    #[test]
    fn sites_in_different_zones_open_in_their_own_nights() {
        let windows = [w("daily 01:00-05:00")];
        let now = t("2026-12-07T00:30:00Z");
        let open_at = |name| match openness(&windows, &zone(name).unwrap(), now) {
            Openness::Open { .. } => now,
            Openness::Closed { until } => until.unwrap(),
        };
        assert_eq!(open_at("UTC"), t("2026-12-07T01:00:00Z"));
        assert_eq!(open_at("Europe/Berlin"), now, "01:30 in Berlin");
        assert_eq!(open_at("America/New_York"), t("2026-12-07T06:00:00Z"));
        assert_eq!(open_at("Asia/Tokyo"), t("2026-12-07T16:00:00Z"));
    }

    /// Berlin's clocks go forward at 02:00 on 2026-03-29 and back at 03:00 on 2026-10-25.
    #[test]
    fn a_night_across_a_clock_change_is_shorter_or_longer() {
        let berlin = zone("Europe/Berlin").unwrap();
        let windows = [w("Sun 01:00-05:00")];
        let spring = occurrences(&windows, &berlin, t("2026-03-28T12:00:00Z"), t("2026-03-30T00:00:00Z"));
        assert_eq!(spring, [(t("2026-03-29T00:00:00Z"), t("2026-03-29T03:00:00Z"))], "3 hours");
        let autumn = occurrences(&windows, &berlin, t("2026-10-24T12:00:00Z"), t("2026-10-26T00:00:00Z"));
        assert_eq!(autumn, [(t("2026-10-24T23:00:00Z"), t("2026-10-25T04:00:00Z"))], "5 hours");
        assert_eq!(autumn[0].1 - autumn[0].0, 5 * HOUR);
        // A window that starts in the skipped hour opens that much later.
        let gap = occurrences(&[w("Sun 02:30-04:00")], &berlin, t("2026-03-28T12:00:00Z"), t("2026-03-30T00:00:00Z"));
        assert_eq!(gap, [(t("2026-03-29T01:30:00Z"), t("2026-03-29T02:00:00Z"))], "02:30 is 03:30 that night");
    }

    #[test]
    fn unknown_zones_are_refused_by_name() {
        let e = zone("Mars/Olympus").unwrap_err();
        assert!(e.contains("\"Mars/Olympus\" is not a time zone"), "{e}");
    }
}
