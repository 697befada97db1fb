//! The one rule for a log filter, wherever it comes from: the controller's `log_level`, `RUST_LOG` for either
//! program, the agent's `--log-level`.
//!
//! A filter is tracing's (`info`, `warn,bindwave=debug`) with two limits, both found by fuzzing the controller's
//! config loader:
//! - ASCII only: tracing-subscriber's parser slices the trimmed text by byte offsets and panics on a directive
//!   that starts with blanks and holds a non-ASCII character.
//! - No span or field filters (`[...]`, `{...}`): their values compile to regular expressions, and a 300-byte
//!   one built an automaton of more than 64 MiB. Levels and targets are what operators set.

use tracing_subscriber::EnvFilter;

use crate::SettingsError;

/// Builds the filter `text` names, or says why it is refused (the text is part of the error's message).
pub fn log_filter(text: &str) -> Result<EnvFilter, SettingsError> {
    let refused = |why: &str| SettingsError::LogFilter { filter: text.to_string(), why: why.to_string() };
    if text.contains(['[', ']', '{', '}']) {
        return Err(refused("it has a span or field filter ([...] or {...}), which is not taken"));
    }
    if !text.is_ascii() {
        return Err(refused("it is not ASCII"));
    }
    EnvFilter::try_new(text).map_err(|e| refused(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_targets_are_taken() {
        for ok in ["info", "debug", "warn,bindwave=debug", "off", "info,bindwave_agent=trace"] {
            assert!(log_filter(ok).is_ok(), "{ok}");
        }
    }

    /// The fuzzer's finds: the first made the parser panic, the second compiled to more than 64 MiB.
    #[test]
    fn the_fuzzers_finds_are_refused_with_their_reason() {
        let e = log_filter(",,\t\tbindwave\u{ffff}=debug").unwrap_err().to_string();
        assert!(e.contains("not ASCII") && e.contains("try info"), "{e}");
        let e = log_filter("bindwave[{f=a|b}]=debug").unwrap_err().to_string();
        assert!(e.contains("span or field filter"), "{e}");
    }

    #[test]
    fn a_bad_level_says_what_was_wrong() {
        let e = log_filter("info,bindwave=loud").unwrap_err().to_string();
        assert!(e.starts_with("\"info,bindwave=loud\" is not a log level or filter"), "{e}");
    }
}
