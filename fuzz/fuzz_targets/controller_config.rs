//! The controller's config loader on any text: TOML syntax, unknown keys (with their nearest known key), types,
//! ranges, durations and the checks of meaning (a broker URL, a log filter, a release key line). It reports
//! problems with their place, never panics. The checks that touch the machine (a release key's file, whether
//! data_dir is a directory) are given a machine that touches nothing.
#![no_main]

use std::sync::OnceLock;

use bindwave_controller_config::Machine;
use bindwave_settings::Schema;
use libfuzzer_sys::fuzz_target;

/// The schema is the same for every input: built once.
static SCHEMA: OnceLock<Schema> = OnceLock::new();

/// Key lines are read as the controller reads them; key files are not opened.
const NOTHING: Machine<'static> = Machine {
    release_key: &|entry| match entry.trim_start().starts_with("ed25519:") {
        true => bindwave_proto::PublicKey::parse(entry).map(drop).map_err(|e| e.to_string()),
        false => Err(format!("{entry}: key files are not read here")),
    },
    not_a_directory: &|_| false,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let schema = SCHEMA.get_or_init(|| bindwave_controller_config::schema().expect("the controller's schema"));
    if let Err(problems) = bindwave_controller_config::parse_with(schema, text, &NOTHING) {
        for p in &problems {
            let _ = p.to_string();
        }
    }
});
