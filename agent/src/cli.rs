//! The `bindwave-agent` command line.
//!
//! A library module, so that the controller can render the agent's man page and shell completions from
//! [`Cli`] (`clap::CommandFactory::command()` with clap_mangen and clap_complete) while the phone's binary links
//! neither. The binary (`main.rs`) parses, sets up logging, and runs the command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{FromEnv, Override};

/// Exit code: the command did what was asked (for `config check`: the config is valid).
pub const EXIT_OK: u8 = 0;
/// Exit code: an error, such as a config file that cannot be read, or a state directory that is not usable.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: `config check` or `config show` found the config invalid; also a usage error (a wrong flag).
pub const EXIT_INVALID: u8 = 2;

const EXAMPLES: &str = "\
Examples:
  bindwave-agent run --config /etc/bindwave/agent.toml
  bindwave-agent config check --config /etc/bindwave/agent.toml
  bindwave-agent status --config /etc/bindwave/agent.toml -o json
  BINDWAVE_AGENT__DOWNLOAD__ATTEMPTS=3 bindwave-agent run --config agent.toml --broker mqtt://10.0.0.5:1883
  bindwave-agent --log-format json run --config agent.toml 2>>/var/log/bindwave-agent.jsonl

Every config value can be set over the file: in the environment as BINDWAVE_AGENT__<SECTION>__<KEY>
(any case, parts separated by two underscores), or with --set SECTION.KEY=VALUE. Flags win over the
environment, the environment over the file. The config file itself comes from --config or
BINDWAVE_AGENT_CONFIG.

Exit codes: 0 success; 1 an error (the message says what and what to do); 2 an invalid config (config
check, config show) or a usage error.";

const RUN_EXAMPLES: &str = "\
Examples:
  bindwave-agent run --config /etc/bindwave/agent.toml
  bindwave-agent run --config agent.toml --broker mqtt://10.0.0.5:1883 --device-id phone-0042
  bindwave-agent run --config agent.toml --set download.attempts=3 --set 'labels=[\"site=munich\"]'
  BINDWAVE_AGENT__BROKER__URL=mqtt://10.0.0.5:1883 bindwave-agent run --config agent.toml
  bindwave-agent --log-format json --log-level debug run --config agent.toml

Exit codes: 0 stopped by SIGINT or SIGTERM; 1 an error, an invalid config included (`config check`
lists every problem).";

const STATUS_EXAMPLES: &str = "\
Examples:
  bindwave-agent status --config /etc/bindwave/agent.toml
  bindwave-agent status --config /etc/bindwave/agent.toml -o json";

const CONFIG_EXAMPLES: &str = "\
Examples:
  bindwave-agent config check --config /etc/bindwave/agent.toml
  bindwave-agent config check --config agent.toml -o json
  bindwave-agent config show --config agent.toml --set download.attempts=3";

const CHECK_EXAMPLES: &str = "\
Examples:
  bindwave-agent config check --config /etc/bindwave/agent.toml
  bindwave-agent config check --config agent.toml -o json | jq '.problems[].message'
  BINDWAVE_AGENT__DEVICE_ID=phone-0042 bindwave-agent config check --config agent.toml --set download.attempts=3

Exit codes:
  0  the config is valid; a summary is printed (device id, hardware level and its source, broker,
     the overrides applied)
  1  an error: the config file cannot be read
  2  the config is invalid: every problem found is printed, with its line and column (or the
     environment variable or flag it came from); also a usage error";

const SHOW_EXAMPLES: &str = "\
Examples:
  bindwave-agent config show --config /etc/bindwave/agent.toml
  bindwave-agent config show --config agent.toml -o json --set download.attempts=3
  bindwave-agent config show --config agent.toml --show-secrets

Exit codes: 0 printed; 1 the config file cannot be read; 2 the config is invalid (the problems go to
stderr).";

/// The Bindwave agent: takes firmware updates for this phone over MQTT.
#[derive(Debug, Parser)]
#[command(name = "bindwave-agent", version, about, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How the agent logs (to stderr).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// What to log: a level (error, warn, info, debug, trace, off) or a filter such as
    /// `info,bindwave_agent=debug`. Wins over RUST_LOG; without either, info.
    #[arg(long, global = true, value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,
    /// `text` for people, `json` for a log shipper: one JSON object per line, with the job span's fields
    /// (job_id, rollout_id, device) on every line about a job.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Text,
        env = "BINDWAVE_AGENT_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to the broker and take update commands until stopped (SIGINT/SIGTERM).
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// What this phone runs and is doing, for a technician: level, version, slot, the job in hand, the last
    /// outcome.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Check the agent's config, or show it as the agent would use it.
    #[command(subcommand, after_help = CONFIG_EXAMPLES)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print text or JSON.
    #[arg(long, short, value_enum, value_name = "FORMAT", default_value_t = Output::Text)]
    pub output: Output,
    /// The same as `-o json`.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the config file, with the overrides from the environment and flags, and explain every problem:
    /// TOML syntax, unknown keys (with the nearest known key), wrong types, numbers out of range, the broker
    /// URL, the hardware level, the access protocol, the CA file, empty commands.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Print the effective config: the file with the overrides applied and every default filled in.
    /// Passwords are hidden unless --show-secrets.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print a report for people (text) or for scripts (json).
    #[arg(long, short, value_enum, value_name = "FORMAT", default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Print TOML (as a config file) or JSON.
    #[arg(long, short, value_enum, value_name = "FORMAT", default_value_t = ShowFormat::Toml)]
    pub output: ShowFormat,
    /// Print passwords as they are instead of ********.
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Toml,
    Json,
}

/// Where the config comes from, and what is set over it.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Config")]
pub struct ConfigArgs {
    /// The agent's TOML config file.
    #[arg(long, short, env = "BINDWAVE_AGENT_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    /// Set a config value over the file and the environment (repeatable), e.g. `--set download.attempts=3`.
    /// The key is TOML's (quote parts with dots: hardware_levels."S30817-S7702-A101"); the value is read as
    /// TOML (3, true, ["a", "b"]) and else taken as a string.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = Override::parse_set)]
    pub set: Vec<Override>,
    /// The MQTT broker, e.g. mqtt://10.0.0.5:1883: the same as --set broker.url=URL.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// The phone's id: the same as --set device_id=ID.
    #[arg(long, value_name = "ID")]
    pub device_id: Option<String>,
    /// Where the agent keeps its slots, journal and downloads: the same as --set state_dir=DIR.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
}

impl ConfigArgs {
    /// Everything set over the file, in the order it applies (the last wins): the environment
    /// (`BINDWAVE_AGENT__...`), then `--set` flags in order, then --broker, --device-id and --state-dir.
    pub fn overrides(&self) -> Vec<Override> {
        let mut all = Override::from_env(std::env::vars_os());
        all.extend(self.flag_overrides());
        all
    }

    /// The overrides given as flags alone.
    pub fn flag_overrides(&self) -> Vec<Override> {
        let mut flags = self.set.clone();
        let dedicated = [
            ("--broker", ["broker", "url"].as_slice(), &self.broker),
            ("--device-id", ["device_id"].as_slice(), &self.device_id),
            ("--state-dir", ["state_dir"].as_slice(), &self.state_dir),
        ];
        for (flag, key, value) in dedicated {
            if let Some(v) = value {
                flags.push(Override::flag(flag, key, v));
            }
        }
        flags
    }
}

/// A log level, or a tracing filter (`info,bindwave_agent=debug`). A bare word that is not a level is refused:
/// tracing would read it as a module name and log nothing useful.
pub fn parse_log_level(s: &str) -> Result<String, String> {
    let hint = "expected a level (error, warn, info, debug, trace, off) or a filter such as info,bindwave_agent=debug";
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    if ["error", "warn", "info", "debug", "trace", "off"].contains(&lower.as_str()) {
        return Ok(lower);
    }
    if !s.contains(['=', ',']) {
        return Err(hint.to_string());
    }
    bindwave_settings::log_filter(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_examples() {
        fn walk(cmd: &clap::Command, path: &str) {
            if cmd.get_name() != "help" {
                let after = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(after.contains("Examples:"), "`{path}` has no examples");
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        walk(&Cli::command(), "bindwave-agent");
    }

    #[test]
    fn flags_map_onto_overrides_after_set() {
        let cli = Cli::try_parse_from([
            "bindwave-agent",
            "run",
            "--config",
            "a.toml",
            "--broker",
            "mqtt://b:1883",
            "--set",
            "broker.url=mqtt://a:1883",
            "--set",
            "download.attempts=3",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else { panic!("not run") };
        let keys: Vec<(String, String)> =
            run.config.flag_overrides().iter().map(|o| (o.key.clone(), o.origin.to_string())).collect();
        assert_eq!(
            keys,
            [
                ("broker.url".to_string(), "--set broker.url=mqtt://a:1883".to_string()),
                ("download.attempts".to_string(), "--set download.attempts=3".to_string()),
                ("broker.url".to_string(), "--broker".to_string()),
            ]
        );
    }

    #[test]
    fn log_levels_and_filters_are_checked() {
        assert_eq!(parse_log_level("DEBUG").unwrap(), "debug");
        assert_eq!(parse_log_level("info,bindwave_agent=trace").unwrap(), "info,bindwave_agent=trace");
        assert!(parse_log_level("verbose").unwrap_err().contains("expected a level"));
        assert!(parse_log_level("info,bindwave_agent=loud").is_err());
        // The controller config fuzzer's find: this made tracing-subscriber's parser panic.
        assert!(parse_log_level(",,\t\tbindwave\u{ffff}=debug").unwrap_err().contains("not ASCII"));
        assert!(parse_log_level("bindwave[{f=a|b}]=debug").unwrap_err().contains("span or field filter"));
        let e = Cli::try_parse_from(["bindwave-agent", "run", "-c", "a", "--set", "nokey"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(EXIT_INVALID));
        assert!(e.to_string().contains("write KEY=VALUE"), "{e}");
    }
}
