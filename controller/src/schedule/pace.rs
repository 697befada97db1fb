//! How fast commands go out: a rate (`100/min`), or a ramp that starts slow and multiplies
//! (`exponential:start=10/min,factor=2,every=50`: 10 a minute, 20 after 50 commands, 40 after 100, ...), capped
//! by the rate when both are given. Each wave is paced on its own, from its first command; the concurrency
//! limit and the windows hold commands back as well, and the rate never lets one out sooner.

use std::fmt;

use crate::model::Millis;

/// Commands a minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_minute: f64,
}

impl Rate {
    pub fn per_minute(self) -> f64 {
        self.per_minute
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Rate, String> {
        let bad = || format!("rate {text:?}: write COUNT/UNIT, e.g. 100/min, 5/s or 1000/h");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: f64 = count.trim().parse().map_err(|_| bad())?;
        let minutes = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => 1.0 / 60.0,
            "m" | "min" | "minute" => 1.0,
            "h" | "hour" => 60.0,
            _ => return Err(bad()),
        };
        let per_minute = count / minutes;
        if !(per_minute.is_finite() && (0.01..=6_000_000.0).contains(&per_minute)) {
            return Err(format!("rate {text:?}: a rate must be from 0.01 a minute (above 0) to 100000 a second"));
        }
        Ok(Rate { per_minute })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/min", self.per_minute)
    }
}

/// A rate that grows: `start` a minute, multiplied by `factor` after every `every` commands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    pub start: Rate,
    pub factor: f64,
    pub every: u32,
}

impl std::str::FromStr for Ramp {
    type Err = String;
    fn from_str(text: &str) -> Result<Ramp, String> {
        let hint = "write exponential:start=10/min,factor=2,every=50";
        let (kind, params) = text.trim().split_once(':').ok_or_else(|| format!("ramp {text:?}: {hint}"))?;
        if !kind.trim().eq_ignore_ascii_case("exponential") {
            return Err(format!("ramp {text:?}: {:?} is not a ramp (there is exponential); {hint}", kind.trim()));
        }
        let (mut start, mut factor, mut every) = (None, None, None);
        for param in params.split(',') {
            let (key, value) = param.split_once('=').ok_or_else(|| format!("ramp {text:?}: {hint}"))?;
            let value = value.trim();
            match key.trim() {
                "start" => start = Some(value.parse::<Rate>()?),
                "factor" => {
                    factor = Some(
                        value.parse::<f64>().map_err(|_| format!("ramp {text:?}: factor {value:?} is not a number"))?,
                    )
                }
                "every" => {
                    every = Some(
                        value
                            .parse::<u32>()
                            .map_err(|_| format!("ramp {text:?}: every {value:?} is not a count of commands"))?,
                    )
                }
                other => return Err(format!("ramp {text:?}: {other:?} is not a ramp setting (start, factor, every)")),
            }
        }
        let (Some(start), Some(factor), Some(every)) = (start, factor, every) else {
            return Err(format!("ramp {text:?}: start, factor and every are all needed; {hint}"));
        };
        if !(factor.is_finite() && (1.0..=100.0).contains(&factor)) {
            return Err(format!("ramp {text:?}: factor must be from 1 to 100, not {factor}"));
        }
        if every == 0 {
            return Err(format!("ramp {text:?}: every must be at least 1 command"));
        }
        Ok(Ramp { start, factor, every })
    }
}

impl fmt::Display for Ramp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exponential:start={},factor={},every={}", self.start, self.factor, self.every)
    }
}

crate::text_serde::as_text!(Rate, "Commands at most this often: N/s, N/min or N/h", "100/min");
crate::text_serde::as_text!(
    Ramp,
    "A rate that starts low and grows by a factor every so many commands",
    "exponential:start=10/min,factor=2,every=50"
);

/// The commands a minute allowed for the next command, after `sent` of the wave's: the ramp's step, capped by
/// the rate; `None`: no limit.
pub fn allowed(rate: Option<Rate>, ramp: Option<Ramp>, sent: u64) -> Option<f64> {
    let ramped = ramp.map(|r| {
        let steps = (sent / u64::from(r.every)).min(1_000) as i32;
        r.start.per_minute * r.factor.powi(steps)
    });
    match (rate.map(Rate::per_minute), ramped) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One wave's pacing: when its next command may go, and how many went. In memory only: after a restart a
/// wave starts its pace again from its next command (never faster than the rate, and a ramp from the step its
/// commands so far had reached).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pace {
    /// In milliseconds, fractional, so that a fast rate does not round to no limit.
    next_at: f64,
    sent: u64,
}

impl Pace {
    /// A pace that has seen `sent` commands already (a restored wave's).
    pub fn resumed(sent: u64) -> Pace {
        Pace { next_at: 0.0, sent }
    }

    /// Whether a command may go at `now`.
    pub fn ready(&self, now: Millis) -> bool {
        now as f64 >= self.next_at
    }

    /// When the next command may go.
    pub fn next_at(&self) -> Millis {
        self.next_at.ceil() as Millis
    }

    /// A command went at `now`.
    pub fn sent(&mut self, now: Millis, rate: Option<Rate>, ramp: Option<Ramp>) {
        if let Some(per_minute) = allowed(rate, ramp, self.sent) {
            self.next_at = self.next_at.max(now as f64) + 60_000.0 / per_minute;
        }
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_ramps_read_back() {
        assert_eq!("100/min".parse::<Rate>().unwrap().per_minute(), 100.0);
        assert_eq!("5/s".parse::<Rate>().unwrap().per_minute(), 300.0);
        assert_eq!("120/h".parse::<Rate>().unwrap().per_minute(), 2.0);
        let ramp: Ramp = "exponential:start=10/min,factor=2,every=50".parse().unwrap();
        assert_eq!(ramp.to_string().parse::<Ramp>().unwrap(), ramp);
        for (bad, says) in [
            ("100", "write COUNT/UNIT"),
            ("0/min", "from 0.01 a minute"),
            ("5/week", "write COUNT/UNIT"),
            ("-1/s", "from 0.01 a minute"),
        ] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        for (bad, says) in [
            ("linear:start=1/min,factor=2,every=5", "is not a ramp"),
            ("exponential:start=1/min,factor=2", "all needed"),
            ("exponential:start=1/min,factor=0.5,every=5", "factor must be"),
            ("exponential:start=1/min,factor=2,every=0", "at least 1"),
            ("exponential:start=1/min,speed=2,every=5", "not a ramp setting"),
        ] {
            let e = bad.parse::<Ramp>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_ramp_multiplies_every_so_many_commands_up_to_the_rate() {
        let ramp: Ramp = "exponential:start=10/min,factor=2,every=50".parse().unwrap();
        let rate: Rate = "100/min".parse().unwrap();
        assert_eq!(allowed(None, Some(ramp), 0), Some(10.0));
        assert_eq!(allowed(None, Some(ramp), 49), Some(10.0));
        assert_eq!(allowed(None, Some(ramp), 50), Some(20.0));
        assert_eq!(allowed(None, Some(ramp), 150), Some(80.0));
        assert_eq!(allowed(Some(rate), Some(ramp), 200), Some(100.0), "capped by the rate");
        assert_eq!(allowed(None, None, 7), None);
    }

    /// Commands are spaced by the rate, however often the pace is asked.
    #[test]
    fn commands_go_no_faster_than_the_rate() {
        let rate = Some("100/min".parse::<Rate>().unwrap());
        let mut pace = Pace::default();
        let mut sent = Vec::new();
        for now in 0..60_000 {
            while pace.ready(now) {
                pace.sent(now, rate, None);
                sent.push(now);
            }
        }
        assert_eq!(sent.len(), 100, "a minute at 100/min");
        assert!(sent.windows(2).all(|p| p[1] - p[0] >= 600), "600 ms apart");
        assert_eq!(pace.next_at(), 60_000);
        // Asked late, the pace does not catch up with a burst.
        let mut late = Pace::default();
        late.sent(0, rate, None);
        late.sent(10_000, rate, None);
        assert_eq!(late.next_at(), 10_600);
    }
}
