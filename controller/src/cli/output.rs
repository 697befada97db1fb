//! How reading commands print: a table for people, or the API's own objects as JSON or YAML for scripts;
//! progress bars for long operations.

use clap::ValueEnum;

use crate::table::Table;
use crate::ControllerError;

/// How a reading command prints: a table for people, JSON or YAML for scripts (the API's own types).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Prints what a reading command read: as JSON or YAML, or as the table `table` prints.
pub(crate) fn emit<T: serde::Serialize>(
    value: &T,
    format: Format,
    table: impl FnOnce(&T),
) -> Result<(), ControllerError> {
    let bad = |e: String| ControllerError::BadRequest(format!("cannot print the answer: {e}"));
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).map_err(|e| bad(e.to_string()))?),
        Format::Yaml => print!("{}", yaml_serde::to_string(value).map_err(|e| bad(e.to_string()))?),
        Format::Table => table(value),
    }
    Ok(())
}

/// A progress bar on stderr for a long operation (`{prefix} [=====>    ] pos/len msg`); hidden when stderr is
/// not a terminal, so pipes and logs stay clean.
pub(crate) fn progress_bar(len: u64, prefix: &str) -> indicatif::ProgressBar {
    progress_with(len, prefix, "{prefix} [{bar:30}] {pos}/{len} {msg}")
}

/// The same, counting bytes.
pub(crate) fn byte_bar(len: u64, prefix: &str) -> indicatif::ProgressBar {
    progress_with(len, prefix, "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}")
}

fn progress_with(len: u64, prefix: &str, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

/// The device list as a table.
pub(crate) fn print_devices(devices: &[crate::model::Device]) {
    let mut t = Table::new(["DEVICE", "ONLINE", "MODEL", "PART NUMBER", "HW", "SOFTWARE", "MINIMUM"]);
    for d in devices {
        let h = d.hello.as_ref();
        t.row([
            d.id.to_string(),
            if d.online { "yes" } else { "no" }.into(),
            h.and_then(|h| h.model.as_deref()).unwrap_or("-").to_string(),
            h.map_or("-".into(), |h| h.part_number.to_string()),
            h.map_or("-".into(), |h| h.hardware_level.to_string()),
            h.map_or("-".into(), |h| h.software_version.to_string()),
            h.map_or("-".into(), |h| h.minimum_software_version.to_string()),
        ]);
    }
    print!("{t}");
}

/// Hardware levels as `3,4`, or `-` for none.
pub(crate) fn levels_text(levels: Option<&[bindwave_proto::HardwareLevel]>) -> String {
    levels.map_or("-".into(), |l| l.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
}
