//! The one rule for a log filter, wherever it comes from: the controller's `log_level`, `RUST_LOG` for either
//! program, the agent's `--log-level`.
//!
//! A filter is a default level and levels by target (`info`, `warn,bindwave=debug`), as `RUST_LOG` writes them,
//! read by tracing-subscriber's `Targets`, which compiles nothing. Not its `EnvFilter`, whose span and field
//! filters the fuzzer of the controller's config loader found two ways to misuse: its parser slices trimmed text
//! by byte offsets and panicked on a directive that starts with blanks and holds a non-ASCII character, and a
//! 300-byte field filter's value compiled to a regular expression whose automaton took more than 64 MiB. So a
//! filter is ASCII, with no span or field filters (`[...]`, `{...}`): levels and targets are what operators set,
//! and leaving the regular expressions out takes their engine out of the phone's binary.

use tracing_subscriber::filter::Targets;

use crate::SettingsError;

/// Builds the filter `text` names, or says why it is refused (the text is part of the error's message).
pub fn log_filter(text: &str) -> Result<Targets, SettingsError> {
    let refused = |why: &str| SettingsError::LogFilter { filter: text.to_string(), why: why.to_string() };
    if text.contains(['[', ']', '{', '}']) {
        return Err(refused("it has a span or field filter ([...] or {...}), which is not taken"));
    }
    if !text.is_ascii() {
        return Err(refused("it is not ASCII"));
    }
    // Blanks around a directive, and empty ones, are left out, as RUST_LOG's readers do.
    let directives: Vec<&str> = text.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err(refused("it names no level"));
    }
    if let Some(d) = directives.iter().find(|d| d.contains(char::is_whitespace)) {
        return Err(refused(&format!("{d:?} has a blank inside")));
    }
    directives.join(",").parse::<Targets>().map_err(|e| refused(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_targets_are_taken() {
        for ok in ["info", "debug", "warn,bindwave=debug", "off", "info,bindwave_agent=trace", " info , rmqtt=error,"] {
            assert!(log_filter(ok).is_ok(), "{ok}");
        }
    }

    /// Levels by target, the most specific winning, as `RUST_LOG` means them.
    #[test]
    fn targets_get_their_levels() {
        use tracing_subscriber::filter::LevelFilter;
        let f = log_filter("warn,bindwave=debug,bindwave::noisy=error").unwrap();
        assert_eq!(f.default_level(), Some(LevelFilter::WARN));
        let level = |target: &str| f.iter().find(|(t, _)| *t == target).map(|(_, l)| l);
        assert_eq!(level("bindwave"), Some(LevelFilter::DEBUG));
        assert_eq!(level("bindwave::noisy"), Some(LevelFilter::ERROR));
        let debug = LevelFilter::DEBUG.into_level().unwrap();
        assert!(f.would_enable("bindwave_agent::job", &debug), "a target's prefix counts");
        assert!(!f.would_enable("rmqtt", &debug));
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
        assert!(log_filter(" , ").unwrap_err().to_string().contains("names no level"));
        assert!(log_filter("info,bind wave=debug").unwrap_err().to_string().contains("has a blank inside"));
    }
}
