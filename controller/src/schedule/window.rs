//! A maintenance window as operators write it: `Mon-Fri 19:00-06:00`, `Sat,Sun 00:00-24:00`, `daily 22:00-05:00`.
//!
//! The days name when a window opens; a window whose end is at or before its start ends the next day, so
//! `Fri 19:00-06:00` runs into Saturday morning. Times are the local wall-clock time of a time zone (the
//! phone's, or the rollout's); where they fall in the zone's calendar is [`super::zone`]'s business.

use std::fmt;

/// Days of the week, Monday first, as the names operators write.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const FULL: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// Minutes in a day: 24:00, the end of a day, is a time a window may end at.
pub const DAY_MINUTES: u16 = 24 * 60;

/// One weekly window: on each of `days`, from `start` for `length` minutes (local time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Bit 0 is Monday, bit 6 Sunday.
    days: u8,
    /// Minutes after midnight, 0 to 1439.
    start: u16,
    /// Minutes after midnight, 1 to 1440; at or before `start`: the next day.
    end: u16,
}

impl Window {
    /// Whether the window opens on day `weekday` (0 = Monday).
    pub fn opens_on(&self, weekday: u8) -> bool {
        weekday < 7 && self.days & (1 << weekday) != 0
    }

    /// Start and end as (hour, minute); the end may be (24, 0).
    pub fn start(&self) -> (u16, u16) {
        (self.start / 60, self.start % 60)
    }

    pub fn end(&self) -> (u16, u16) {
        (self.end / 60, self.end % 60)
    }

    /// Whether the window ends on the day after it opens.
    pub fn overnight(&self) -> bool {
        self.end <= self.start
    }

    /// The window's length in minutes (before any DST change lengthens or shortens a night).
    pub fn minutes(&self) -> u16 {
        if self.overnight() {
            DAY_MINUTES - self.start + self.end
        } else {
            self.end - self.start
        }
    }
}

impl std::str::FromStr for Window {
    type Err = String;
    fn from_str(text: &str) -> Result<Window, String> {
        let hint =
            "write DAYS HH:MM-HH:MM, e.g. \"Mon-Fri 19:00-06:00\", \"Sat,Sun 00:00-24:00\" or \"daily 22:00-05:00\"";
        let (days, times) =
            text.trim().split_once(char::is_whitespace).ok_or_else(|| format!("window {text:?}: {hint}"))?;
        let days = parse_days(days.trim()).map_err(|e| format!("window {text:?}: {e}; {hint}"))?;
        let (start, end) = times.trim().split_once('-').ok_or_else(|| format!("window {text:?}: {hint}"))?;
        let start = parse_time(start).map_err(|e| format!("window {text:?}: {e}; {hint}"))?;
        let end = parse_time(end).map_err(|e| format!("window {text:?}: {e}; {hint}"))?;
        if start == DAY_MINUTES {
            return Err(format!("window {text:?}: a window starts at 23:59 at the latest (24:00 is an end)"));
        }
        if start == end {
            return Err(format!("window {text:?} starts and ends at the same time: for a whole day write 00:00-24:00"));
        }
        Ok(Window { days, start, end: if end == 0 { DAY_MINUTES } else { end } })
    }
}

/// `Mon-Fri`, `Sat,Sun`, `Mon,Wed-Fri`, `Fri-Mon` (wrapping), `daily`.
fn parse_days(text: &str) -> Result<u8, String> {
    if ["daily", "*", "every day"].contains(&text.to_ascii_lowercase().as_str()) {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for part in text.split(',') {
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => (day(part)?, day(part)?),
        };
        let mut d = from;
        loop {
            days |= 1 << d;
            if d == to {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(days)
}

fn day(text: &str) -> Result<u8, String> {
    let t = text.trim().to_ascii_lowercase();
    let found = FULL.iter().position(|full| t.len() >= 3 && full.starts_with(&t));
    found.map(|i| i as u8).ok_or_else(|| format!("{:?} is not a day (Mon, Tue, ..., Sun)", text.trim()))
}

/// `HH:MM`, 00:00 to 24:00.
fn parse_time(text: &str) -> Result<u16, String> {
    let t = text.trim();
    let bad = || format!("{t:?} is not a time from 00:00 to 24:00");
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == 0x7f {
            f.write_str("daily")?;
        } else {
            // Runs of days: three or more as a range, shorter ones listed.
            let mut parts = Vec::new();
            let mut d = 0u8;
            while d < 7 {
                if !self.opens_on(d) {
                    d += 1;
                    continue;
                }
                let first = d;
                while d + 1 < 7 && self.opens_on(d + 1) {
                    d += 1;
                }
                match d - first {
                    0 => parts.push(DAYS[first as usize].to_string()),
                    1 => parts.push(format!("{},{}", DAYS[first as usize], DAYS[d as usize])),
                    _ => parts.push(format!("{}-{}", DAYS[first as usize], DAYS[d as usize])),
                }
                d += 1;
            }
            f.write_str(&parts.join(","))?;
        }
        let ((sh, sm), (eh, em)) = (self.start(), self.end());
        write!(f, " {sh:02}:{sm:02}-{eh:02}:{em:02}")
    }
}

crate::text_serde::as_text!(
    Window,
    "A weekly window: days (Mon-Fri, Sat,Sun) and a time span HH:MM-HH:MM, which may run past midnight",
    "Mon-Fri 19:00-06:00"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Window {
        s.parse().unwrap()
    }

    #[test]
    fn windows_read_back_from_their_display() {
        for (text, shown) in [
            ("Mon-Fri 19:00-06:00", "Mon-Fri 19:00-06:00"),
            ("Sat,Sun 00:00-24:00", "Sat,Sun 00:00-24:00"),
            ("daily 22:00-05:00", "daily 22:00-05:00"),
            ("mon,wed-fri 1:30-2:45", "Mon,Wed-Fri 01:30-02:45"),
            ("Fri-Mon 20:00-23:00", "Mon,Fri-Sun 20:00-23:00"),
            ("Monday 08:00-00:00", "Mon 08:00-24:00"),
            ("Mon-Sun 00:00-24:00", "daily 00:00-24:00"),
        ] {
            let window = w(text);
            assert_eq!(window.to_string(), shown, "{text}");
            assert_eq!(w(shown), window, "{shown} reads back");
        }
    }

    #[test]
    fn overnight_windows_end_the_next_day() {
        let night = w("Mon-Fri 19:00-06:00");
        assert!(night.overnight() && night.opens_on(4) && !night.opens_on(5));
        assert_eq!(night.minutes(), 11 * 60);
        let day = w("Sat 00:00-24:00");
        assert!(!day.overnight());
        assert_eq!(day.minutes(), DAY_MINUTES);
        assert_eq!(w("Sat 22:00-00:00").minutes(), 120, "midnight as an end is the end of the day");
    }

    #[test]
    fn a_bad_window_says_what_is_wrong_and_how_to_write_one() {
        for (text, says) in [
            ("Mon-Fri", "write DAYS HH:MM-HH:MM"),
            ("Moon 19:00-06:00", "\"Moon\" is not a day"),
            ("Mon 25:00-06:00", "\"25:00\" is not a time"),
            ("Mon 19:60-06:00", "\"19:60\" is not a time"),
            ("Mon 19:00", "write DAYS HH:MM-HH:MM"),
            ("Mon 10:00-10:00", "starts and ends at the same time"),
            ("Mon 24:00-06:00", "23:59 at the latest"),
            ("Mo 10:00-11:00", "is not a day"),
        ] {
            let e = text.parse::<Window>().unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
