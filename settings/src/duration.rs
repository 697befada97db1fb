//! Durations in settings: a whole number (of seconds, or of milliseconds for a `*_ms` key) as before, or a
//! duration in words as humantime reads it (`"30s"`, `"6h"`, `"1h30m"`, `"500ms"`). Use them with
//! `#[serde(deserialize_with = "...")]`; the settings keep their integer type, so they serialize as numbers.

use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// The longest duration a setting or a flag takes: a year. Anything longer is a slip of the keyboard (a soak
/// of `18446744073709551s`), and every duration times a thousand (milliseconds) stays far inside a `u64`.
pub const MAX_SECS: u64 = 365 * 24 * 3600;

/// Seconds, at least 1.
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Amount { unit: Unit::Secs, min: 1 })
}

/// Seconds, 0 allowed.
pub fn secs_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Amount { unit: Unit::Secs, min: 0 })
}

/// Seconds, at least 1, for an optional key (with `#[serde(default)]`).
pub fn opt_secs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    secs(d).map(Some)
}

/// Milliseconds, 0 allowed.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(Amount { unit: Unit::Millis, min: 0 })
}

/// A duration in words or a number, as a `Duration`: for flags (`--soak 1h30m`, `--soak 90`).
/// At most [`MAX_SECS`].
pub fn parse_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let n = match text.parse::<u64>() {
        Ok(n) => n,
        Err(_) => humantime::parse_duration(text)
            .map(|d| d.as_secs())
            .map_err(|e| format!("{text:?} is not a duration: {e}"))?,
    };
    if n > MAX_SECS {
        return Err(format!("{text:?} is longer than a year, the longest duration Bindwave takes"));
    }
    Ok(n)
}

#[derive(Clone, Copy)]
enum Unit {
    Secs,
    Millis,
}

struct Amount {
    unit: Unit,
    min: u64,
}

impl Amount {
    fn whole<E: de::Error>(&self, n: u64, unexpected: de::Unexpected) -> Result<u64, E> {
        let max = match self.unit {
            Unit::Secs => MAX_SECS,
            Unit::Millis => MAX_SECS * 1000,
        };
        if (self.min..=max).contains(&n) {
            Ok(n)
        } else {
            Err(E::invalid_value(unexpected, self))
        }
    }
}

impl<'de> Visitor<'de> for Amount {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let (unit, example) = match self.unit {
            Unit::Secs => ("seconds", "\"30s\" or \"6h\""),
            Unit::Millis => ("milliseconds", "\"500ms\" or \"2s\""),
        };
        let max = match self.unit {
            Unit::Secs => MAX_SECS,
            Unit::Millis => MAX_SECS * 1000,
        };
        write!(f, "a whole number of {unit} from {} to {max} (a year), or a duration such as {example}", self.min)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(n) => self.whole(n, de::Unexpected::Signed(v)),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.whole(v, de::Unexpected::Unsigned(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        let bad = || E::invalid_value(de::Unexpected::Str(v), &self);
        let d: Duration = humantime::parse_duration(v.trim()).map_err(|_| bad())?;
        let n = match self.unit {
            Unit::Secs if d.subsec_nanos() == 0 => d.as_secs(),
            Unit::Millis if d.subsec_nanos().is_multiple_of(1_000_000) => {
                u64::try_from(d.as_millis()).map_err(|_| bad())?
            }
            _ => return Err(bad()),
        };
        self.whole(n, de::Unexpected::Str(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct S {
        #[serde(deserialize_with = "secs")]
        t: u64,
        #[serde(default, deserialize_with = "millis")]
        ms: u64,
    }

    fn t(text: &str) -> Result<S, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn numbers_and_words_both_read() {
        assert_eq!(t("t = 30").unwrap().t, 30);
        assert_eq!(t("t = \"30s\"").unwrap().t, 30);
        assert_eq!(t("t = \"6h\"").unwrap().t, 6 * 3600);
        assert_eq!(t("t = \"1h30m\"").unwrap().t, 5400);
        assert_eq!(t("t = 1\nms = \"2s\"").unwrap().ms, 2000);
        assert_eq!(t("t = 1\nms = 500").unwrap().ms, 500);
        for bad in ["t = 0", "t = -1", "t = \"soon\"", "t = \"1.5s\"", "t = 31536001", "t = \"400days\""] {
            assert!(t(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_secs("1h30m"), Ok(5400));
        assert_eq!(parse_secs("90"), Ok(90));
        assert!(parse_secs("later").is_err());
        assert_eq!(parse_secs("365days"), Ok(MAX_SECS));
        let long = parse_secs("18446744073709551s").unwrap_err();
        assert!(long.contains("longer than a year"), "{long}");
        assert!(parse_secs("18446744073709551615").is_err());
    }
}
