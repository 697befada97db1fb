//! The config loader on any text, with the agent's schema: TOML syntax, unknown keys (with their nearest
//! known key), types, ranges and durations. It reports problems with their place, never panics. (The checks
//! that touch the machine, a probe command or a CA file, are not run here: they run commands and read files.)
#![no_main]

use std::sync::OnceLock;

use bindwave_agent::config::schema;
use bindwave_agent::AgentConfig;
use bindwave_settings::{Schema, Style};
use libfuzzer_sys::fuzz_target;

/// The schema is the same for every input: built once.
static SCHEMA: OnceLock<Schema> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let schema = SCHEMA.get_or_init(|| schema().expect("the agent's schema"));
    let outcome = bindwave_settings::read::<AgentConfig>(schema, Style::Nested, text, &[]);
    for p in &outcome.problems {
        let _ = p.to_string();
    }
});
