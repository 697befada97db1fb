//! The agent's configuration file.
//!
//! ```toml
//! device_id = "phone-0001"
//! part_number = "S30817-S7701-A101"
//! software_version = "V3 R3.11.0"          # the factory version; the installed one takes over after an update
//! minimum_software_version = "V3 R1.0.0"   # binds without a hardware-level field must be at least this
//! state_dir = "/var/lib/bindwave-agent"
//! # hardware_level = 3                     # a fixed level; otherwise it comes from the part number table
//! # model = "CP400"                        # reported in hello, for targeting
//! # labels = ["site=munich", "pilot"]      # reported in hello, for targeting
//!
//! [broker]
//! url = "mqtt://127.0.0.1:1883"
//!
//! [hardware_levels]                        # part number -> hardware level
//! "S30817-S7701-A101" = 3
//!
//! [download]                               # optional: retries of a failing download, each resuming
//! attempts = 10
//! backoff_ms = 500
//! max_backoff_secs = 30
//! ```
//!
//! Every value can be set over the file, by an environment variable `BINDWAVE_AGENT__<SECTION>__<KEY>` (any
//! case) or a flag (`--set section.key=value`, `--broker`, `--device-id`, `--state-dir`): see [`Override`].
//! Flags win over the environment, the environment over the file. [`check`] reads the file, applies the
//! overrides and reports every problem it finds, each with where it is (line and column, variable or flag);
//! [`AgentConfig::load_with`] is the same, failing with all of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bindwave_proto::wire::{DeviceId, LevelConflict, LevelSource};
use bindwave_proto::{DeviceProfile, HardwareLevel, SoftwareVersion};
use serde::{Deserialize, Serialize};

use crate::AgentError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub device_id: DeviceId,
    pub part_number: String,
    /// The software the phone shipped with; after an install the slot record says what runs.
    pub software_version: SoftwareVersion,
    pub minimum_software_version: SoftwareVersion,
    /// A fixed hardware level. When set it wins over the part-number table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_level: Option<HardwareLevel>,
    /// Part number -> hardware level.
    #[serde(default)]
    pub hardware_levels: BTreeMap<String, HardwareLevel>,
    /// The phone model, reported in hello for targeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Labels reported in hello for targeting, e.g. `["site=munich", "pilot"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    pub state_dir: PathBuf,
    pub broker: BrokerSettings,
    /// Seconds between repeats of a final report the controller has not acknowledged yet.
    #[serde(default = "default_report_retry_secs")]
    pub report_retry_secs: u64,
    /// How hard a download tries before the job fails.
    #[serde(default)]
    pub download: DownloadSettings,
    /// The phone's default access settings, for commands that carry only a file name ("use defaults").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessSettings>,
    /// A dynamic check of the hardware level; when it disagrees with the part number or the fixed level, it
    /// wins and the conflict is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_probe: Option<ProbeSettings>,
    /// What happens after an install: restart into the new version, check its health.
    #[serde(default)]
    pub health: HealthSettings,
    /// A program that installs the verified payload instead of the built-in slot switch alone.
    #[serde(default)]
    pub installer: InstallerSettings,
    /// How the phone shows an update in progress (LEDs, display).
    #[serde(default)]
    pub indicator: crate::indicator::IndicatorSettings,
    /// Minimum supported software version per hardware level (`"3" = "V3 R2.0.0"`); levels not listed use
    /// `minimum_software_version`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub minimum_software_versions: BTreeMap<String, SoftwareVersion>,
}

/// `[installer]`: the phone's own installer. The verified payload is written to the inactive slot first; the
/// command gets its path (`{payload}` in the arguments, and `BINDWAVE_PAYLOAD`), and its exit status decides:
/// 0 switches to the new slot, anything else fails the job (`install_failed`) and keeps the old one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InstallerSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Seconds the installer may take. Default 600.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `[health]`: success means the phone runs the new version and is healthy, not that the file arrived.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// Restarts the phone into the new version (on a real phone, this does not return). The agent journals
    /// the install first and runs the health check when it starts again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reboot_command: Option<Vec<String>>,
    /// Exit status 0 means healthy; anything else switches back to the previous version (`rolled_back`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_command: Option<Vec<String>>,
    /// Seconds the health check may take. Default 60.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_timeout_secs: Option<u64>,
}

impl HealthSettings {
    pub fn configured(&self) -> bool {
        self.reboot_command.is_some() || self.check_command.is_some()
    }
}

/// `[hardware_probe]`: a command that prints the level, or a file that holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    /// Program and arguments, e.g. `["/usr/bin/hw-level", "--numeric"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl ProbeSettings {
    /// Runs the probe; the level is the first number it prints (or the file holds).
    pub fn run(&self) -> Result<HardwareLevel, AgentError> {
        let err = |detail: String| AgentError::Probe(detail);
        let text = match (&self.command, &self.file) {
            (Some(cmd), None) => {
                let (program, args) = cmd.split_first().ok_or_else(|| err("hardware_probe.command is empty".into()))?;
                let out = std::process::Command::new(program)
                    .args(args)
                    .output()
                    .map_err(|e| err(format!("cannot run {program}: {e}")))?;
                if !out.status.success() {
                    return Err(err(format!("{program} exited with {}", out.status)));
                }
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
            (None, Some(file)) => {
                std::fs::read_to_string(file).map_err(|e| err(format!("cannot read {}: {e}", file.display())))?
            }
            _ => return Err(err("set exactly one of hardware_probe.command and hardware_probe.file".into())),
        };
        let t = text.trim();
        t.parse::<u16>()
            .map(HardwareLevel)
            .map_err(|_| err(format!("the probe gave {t:?}, not a hardware level (0-65535)")))
    }
}

/// `[access]`: where binds are when a command says "use defaults", as in the phone's FTP/HTTPS access data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// `http`, `https`, `ftp` or `ftps` (explicit AUTH TLS; implicit TLS when `port` is 990).
    pub protocol: String,
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The directory on the server, e.g. `/binds`.
    #[serde(default)]
    pub path: String,
}

impl AccessSettings {
    /// The URL of `file` on the default server. A file name with a path in it is refused.
    pub fn url_for(&self, file: &str) -> Result<String, String> {
        if file.is_empty() || file.contains('/') || file.contains('\\') || file == "." || file == ".." {
            return Err(format!("{file:?} is not a plain file name (use defaults takes only a name)"));
        }
        let protocol = self.protocol.to_ascii_lowercase();
        if !matches!(protocol.as_str(), "http" | "https" | "ftp" | "ftps") {
            return Err(format!(
                "access protocol {:?} is not supported by this agent (use http, https, ftp or ftps)",
                self.protocol
            ));
        }
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let dir = self.path.trim_matches('/');
        let dir = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        Ok(format!("{protocol}://{}{port}/{dir}{file}", self.server))
    }
}

/// `[download]`: retries of an interrupted or failing download (each resumes where the last stopped).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadSettings {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first pause between attempts, in milliseconds; it doubles each time, with jitter.
    pub backoff_ms: u64,
    /// The longest pause between attempts, in seconds.
    pub max_backoff_secs: u64,
    /// Extra CA certificates (PEM) to trust for https:// and ftps:// downloads, e.g. the private CA of the
    /// fleet's servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The longest a job may take to download and verify its bind, retries included, in seconds from when the
    /// agent took the job up; then it is abandoned and reported `timed_out`. A command's own `timeout_secs` (the rollout's
    /// device timeout) shortens it.
    pub timeout_secs: u64,
}

impl Default for DownloadSettings {
    fn default() -> Self {
        DownloadSettings { attempts: 10, backoff_ms: 500, max_backoff_secs: 30, ca_file: None, timeout_secs: 6 * 3600 }
    }
}

impl DownloadSettings {
    /// The time limit of a job: this agent's, or the command's if that is shorter.
    pub fn limit_for(&self, cmd: &bindwave_proto::wire::UpdateCommand) -> std::time::Duration {
        let secs = cmd.timeout_secs.map_or(self.timeout_secs, |c| c.min(self.timeout_secs));
        std::time::Duration::from_secs(secs.max(1))
    }

    pub fn policy(&self) -> crate::fetch::RetryPolicy {
        crate::fetch::RetryPolicy {
            attempts: self.attempts.max(1),
            backoff: std::time::Duration::from_millis(self.backoff_ms),
            max_backoff: std::time::Duration::from_secs(self.max_backoff_secs),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// `mqtt://host:port`
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn default_report_retry_secs() -> u64 {
    10
}

/// What the phone knows about itself, resolved from the config and the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub hardware_level: HardwareLevel,
    pub source: LevelSource,
    pub conflict: Option<LevelConflict>,
}

impl AgentConfig {
    /// Loads the config file as it is, with no overrides. See [`AgentConfig::load_with`].
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        Self::load_with(path, &[])
    }

    /// Loads the config file, applies `overrides` on top (in order: the last one wins), and checks everything
    /// [`check`] checks. Every problem found is in the error.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Self, AgentError> {
        check(path, overrides)?.into_config()
    }

    /// The hardware level from the configuration alone: the fixed level if set, else the part number.
    fn configured_level(&self) -> Option<(HardwareLevel, LevelSource)> {
        self.hardware_level
            .map(|l| (l, LevelSource::Configured))
            .or_else(|| self.hardware_levels.get(&self.part_number).map(|l| (*l, LevelSource::PartNumber)))
    }

    /// The phone's hardware level and where it came from. The probe, when configured, wins; a configured level
    /// that disagrees with it is reported as a conflict.
    pub fn identity(&self) -> Result<Identity, AgentError> {
        let configured = self.configured_level();
        if let Some(probe) = &self.hardware_probe {
            let level = probe.run()?;
            let conflict = configured.filter(|(l, _)| *l != level).map(|(other, other_source)| LevelConflict {
                probe: level,
                other,
                other_source,
            });
            return Ok(Identity { hardware_level: level, source: LevelSource::Probe, conflict });
        }
        match configured {
            Some((hardware_level, source)) => Ok(Identity { hardware_level, source, conflict: None }),
            None => Err(AgentError::ConfigInvalid(format!(
                "no hardware level for part number {:?}: add it to [hardware_levels], set hardware_level, or \
                 configure [hardware_probe]",
                self.part_number
            ))),
        }
    }

    /// The minimum supported software version for a hardware level.
    pub fn minimum_for(&self, level: HardwareLevel) -> &SoftwareVersion {
        self.minimum_software_versions.get(&level.to_string()).unwrap_or(&self.minimum_software_version)
    }

    pub fn profile(&self, identity: &Identity) -> DeviceProfile {
        DeviceProfile {
            hardware_level: identity.hardware_level,
            minimum_software_version: self.minimum_for(identity.hardware_level).clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Loading and checking: the file, then overrides from the environment and flags, then every check, with every
// problem reported in words an integrator can act on (where it is, what is wrong, what to write instead).
// ---------------------------------------------------------------------------------------------------------------

/// The prefix of environment variables that override config values: `BINDWAVE_AGENT__DOWNLOAD__ATTEMPTS=3`.
pub const ENV_PREFIX: &str = "BINDWAVE_AGENT__";

/// Where a config value, or a problem with one, comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// The config file, at a line and column (1-based) when known.
    File {
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        column: Option<usize>,
    },
    /// An environment variable `BINDWAVE_AGENT__...`.
    Env { var: String },
    /// A command-line flag: `--set KEY=VALUE`, `--broker`, `--device-id`, `--state-dir`.
    Flag { flag: String },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { line: Some(l), column: Some(c) } => write!(f, "line {l}, column {c}"),
            Origin::File { line: Some(l), column: None } => write!(f, "line {l}"),
            Origin::File { .. } => Ok(()),
            Origin::Env { var } => f.write_str(var),
            Origin::Flag { flag } => f.write_str(flag),
        }
    }
}

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The dotted key it is about (`download.attempts`), if it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(flatten)]
    pub origin: Origin,
    /// What is wrong and what to do, e.g. "unknown key `atempts` in [download]; did you mean `attempts`?".
    pub message: String,
    /// The key probably meant, for an unknown key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = self.origin.to_string();
        if origin.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{origin}: {}", self.message)
        }
    }
}

/// Problems on one line each, for an error message: one inline, several on indented lines.
pub(crate) fn list_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut out = format!("{} problems:", many.len());
            for p in many {
                out.push_str("\n  ");
                out.push_str(&p.to_string());
            }
            out
        }
    }
}

/// A config value set over the file, from the environment or a flag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Override {
    /// The dotted key, as TOML writes it: `download.attempts`, `hardware_levels."S30817-S7702-A101"`.
    pub key: String,
    #[serde(skip)]
    pub path: Vec<String>,
    /// The value; a value given as text where the key takes a string is that text.
    pub value: toml::Value,
    #[serde(flatten)]
    pub origin: Origin,
    /// The value as written, for keys that take a string (`--set model=inf` means the string "inf").
    #[serde(skip)]
    raw: String,
    /// Environment variables name keys in any case: the path is matched against the known keys.
    #[serde(skip)]
    case_insensitive: bool,
    /// Why this override cannot apply (a malformed environment variable), reported with the other problems.
    #[serde(skip)]
    error: Option<String>,
}

impl Override {
    /// `--set KEY=VALUE`: KEY is a TOML dotted key (`download.attempts`, `hardware_levels."S30817-S7702-A101"`);
    /// VALUE is read as a TOML value (`3`, `true`, `["a", "b"]`, `"text"`), and else taken as a string.
    pub fn parse_set(arg: &str) -> Result<Override, String> {
        let (key, raw) = split_assignment(arg)
            .ok_or_else(|| format!("{arg:?} has no `=`: write KEY=VALUE, e.g. --set download.attempts=3"))?;
        let path = parse_dotted_key(key.trim())?;
        let shown = if path.last().is_some_and(|k| is_secret(k)) { REDACTED } else { raw };
        Ok(Override {
            key: dotted(&path),
            path,
            value: parse_value(raw),
            origin: Origin::Flag { flag: format!("--set {key}={shown}") },
            raw: raw.to_string(),
            case_insensitive: false,
            error: None,
        })
    }

    /// A dedicated flag (`--broker URL`) for a key: the value is taken as a string, as written.
    pub fn flag(flag: &str, key: &[&str], value: &str) -> Override {
        let path: Vec<String> = key.iter().map(|k| k.to_string()).collect();
        Override {
            key: dotted(&path),
            path,
            value: toml::Value::String(value.to_string()),
            origin: Origin::Flag { flag: flag.to_string() },
            raw: value.to_string(),
            case_insensitive: false,
            error: None,
        }
    }

    /// The overrides in an environment: every `BINDWAVE_AGENT__<SECTION>__<KEY>` variable (any case; parts
    /// separated by two underscores), sorted by name. Values are read like `--set` values.
    pub fn from_env(vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>) -> Vec<Override> {
        let mut found: Vec<Override> = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                let rest = name.get(ENV_PREFIX.len()..)?.to_string();
                if !name.get(..ENV_PREFIX.len())?.eq_ignore_ascii_case(ENV_PREFIX) {
                    return None;
                }
                let path: Vec<String> = rest.split("__").map(str::to_string).collect();
                let mut error = None;
                if path.iter().any(String::is_empty) {
                    error = Some(format!(
                        "a part of the key is empty: separate the parts with two underscores, e.g. \
                         {ENV_PREFIX}DOWNLOAD__ATTEMPTS"
                    ));
                }
                let raw = value.into_string().unwrap_or_else(|_| {
                    error = Some("the value is not valid UTF-8".into());
                    String::new()
                });
                Some(Override {
                    key: dotted(&path),
                    path,
                    value: parse_value(&raw),
                    origin: Origin::Env { var: name },
                    raw,
                    case_insensitive: true,
                    error,
                })
            })
            .collect();
        found.sort_by_key(|o| o.origin.to_string());
        found
    }

    /// The value as shown to people: secrets hidden.
    fn shown(&self) -> toml::Value {
        if self.path.last().is_some_and(|k| is_secret(k)) {
            toml::Value::String(REDACTED.into())
        } else {
            self.value.clone()
        }
    }
}

const REDACTED: &str = "********";

/// Keys whose values are never shown unless asked: `broker.password`, `access.password`.
fn is_secret(key: &str) -> bool {
    key == "password"
}

/// Splits `KEY=VALUE` at the first `=` outside quotes (a quoted key part may hold one).
fn split_assignment(arg: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    for (i, c) in arg.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '=') => return Some((&arg[..i], &arg[i + 1..])),
            _ => {}
        }
    }
    None
}

/// A TOML dotted key, read by TOML's own parser, as its parts.
fn parse_dotted_key(key: &str) -> Result<Vec<String>, String> {
    let bad = || {
        format!(
            "{key:?} is not a config key: write section.key, e.g. download.attempts, and quote a part with dots \
             or spaces, e.g. hardware_levels.\"S30817-S7702-A101\""
        )
    };
    if key.is_empty() || key.contains(['\n', '\r', '#']) {
        return Err(bad());
    }
    let table: toml::Table = toml::from_str(&format!("{key} = 0")).map_err(|_| bad())?;
    let mut path = Vec::new();
    let mut level = &table;
    loop {
        let mut entries = level.iter();
        let (Some((k, v)), None) = (entries.next(), entries.next()) else { return Err(bad()) };
        path.push(k.clone());
        match v {
            toml::Value::Table(inner) => level = inner,
            _ => return Ok(path),
        }
    }
}

/// A value as TOML reads it (`3`, `true`, `["a"]`, `"x"`), or else the text itself as a string.
fn parse_value(raw: &str) -> toml::Value {
    if !raw.contains(['\n', '\r']) {
        if let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            if t.len() == 1 {
                if let Some(v) = t.remove("v") {
                    return v;
                }
            }
        }
    }
    toml::Value::String(raw.to_string())
}

/// A key path as TOML writes it, quoting parts that are not bare keys.
fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|k| {
            if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                k.clone()
            } else {
                toml::Value::String(k.clone()).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The outcome of checking a config: the problems, or the config and the phone's identity.
#[derive(Debug)]
pub struct Check {
    pub path: PathBuf,
    /// Every problem found; empty when the config is valid.
    pub problems: Vec<Problem>,
    /// The overrides that were applied, in order.
    pub overrides: Vec<Override>,
    /// The effective config, when valid.
    pub config: Option<AgentConfig>,
    /// The phone's hardware level and its source, when valid.
    pub identity: Option<Identity>,
}

/// Reads the config file, applies `overrides` (in order), and checks it: TOML syntax (with line and column),
/// unknown keys (with the nearest known key), types and ranges, the broker URL, the hardware level (part-number
/// table, fixed level or probe), the access protocol, the CA file, the hook commands. The error is for a file
/// that cannot be read; everything wrong with its content is in [`Check::problems`].
pub fn check(path: &Path, overrides: &[Override]) -> Result<Check, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::ConfigRead { path: path.into(), source })?;
    Ok(check_text(path, &text, overrides))
}

/// [`check`] on a config's text.
pub fn check_text(path: &Path, text: &str, overrides: &[Override]) -> Check {
    let mut check =
        Check { path: path.into(), problems: Vec::new(), overrides: Vec::new(), config: None, identity: None };
    let mut table = match toml::from_str::<toml::Table>(text) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_column(text, s.start)).unzip();
            let detail = e.message().trim().replace('\n', "; ");
            check.problems.push(Problem {
                key: None,
                origin: Origin::File { line, column },
                message: format!("TOML syntax error: {detail}"),
                suggestion: None,
            });
            return check;
        }
    };
    for o in overrides {
        let mut o = o.clone();
        match apply(&mut table, &mut o) {
            Ok(()) => check.overrides.push(o),
            Err(message) => check.problems.push(Problem {
                key: Some(o.key.clone()),
                origin: o.origin.clone(),
                message,
                suggestion: None,
            }),
        }
    }
    let at = Locator { text, spans: toml::from_str(text).unwrap_or_default(), overrides: &check.overrides };
    let mut findings = Vec::new();
    let cleaned = check_section(&table, ROOT, &[], &mut findings);
    let config = AgentConfig::deserialize(toml::Value::Table(cleaned));
    let identity = match &config {
        Ok(config) => check_meaning(config, &mut findings),
        Err(e) => {
            // The checks above stand in for the struct's own; this catches what they might miss.
            if findings.is_empty() {
                findings.push(Finding::new(&[], format!("the config does not describe an agent: {}", e.message())));
            }
            None
        }
    };
    check.problems.extend(findings.into_iter().map(|f| f.locate(&at)));
    // In the order of the file, then the environment, then the flags.
    check.problems.sort_by_key(|p| match p.origin {
        Origin::File { line, column } => (0, line.unwrap_or(usize::MAX), column.unwrap_or(0)),
        Origin::Env { .. } => (1, 0, 0),
        Origin::Flag { .. } => (2, 0, 0),
    });
    if check.problems.is_empty() {
        check.config = config.ok();
        check.identity = identity;
    }
    check
}

impl Check {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty() && self.config.is_some()
    }

    /// The config, or an error that lists every problem.
    pub fn into_config(self) -> Result<AgentConfig, AgentError> {
        match self.config {
            Some(config) if self.problems.is_empty() => Ok(config),
            _ => Err(AgentError::ConfigProblems { path: self.path, problems: self.problems }),
        }
    }

    /// The report for people: a summary of a valid config, or every problem.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let path = self.path.display();
        match (&self.config, &self.identity) {
            (Some(config), Some(identity)) if self.problems.is_empty() => {
                let _ = writeln!(out, "agent config {path} is valid");
                let _ = writeln!(out, "device id       {}", config.device_id);
                let _ =
                    writeln!(out, "hardware level  {} ({})", identity.hardware_level, level_source(config, identity));
                let _ = writeln!(out, "broker          {}", config.broker.url);
                let _ = writeln!(out, "state dir       {}", config.state_dir.display());
                for (i, o) in self.overrides.iter().enumerate() {
                    let label = if i == 0 { "overrides" } else { "" };
                    let _ = writeln!(out, "{label:<16}{} = {} ({})", o.key, o.shown(), o.origin);
                }
            }
            _ => {
                let n = self.problems.len();
                let _ = writeln!(out, "agent config {path} is invalid: {n} problem{}", if n == 1 { "" } else { "s" });
                for p in &self.problems {
                    let _ = writeln!(out, "  {p}");
                }
            }
        }
        out
    }

    /// The report for scripts (`config check -o json`).
    pub fn report(&self) -> CheckReport<'_> {
        let valid = self.config.as_ref().zip(self.identity.as_ref()).filter(|_| self.is_valid());
        CheckReport {
            config: self.path.display().to_string(),
            valid: valid.is_some(),
            device_id: valid.map(|(c, _)| c.device_id.as_str()),
            hardware_level: valid.map(|(_, i)| i.hardware_level.0),
            hardware_level_source: valid.map(|(_, i)| i.source.as_str()),
            broker: valid.map(|(c, _)| c.broker.url.as_str()),
            state_dir: valid.map(|(c, _)| c.state_dir.display().to_string()),
            problems: &self.problems,
            overrides: self.overrides.iter().map(|o| Override { value: o.shown(), ..o.clone() }).collect(),
            effective: valid.map(|(c, _)| c.effective(false)),
        }
    }
}

/// `config check -o json`: whether the config is valid, its problems, the overrides applied, and for a valid
/// config a summary and the effective config (passwords hidden).
#[derive(Debug, Serialize)]
pub struct CheckReport<'a> {
    pub config: String,
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_level: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_level_source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    pub problems: &'a [Problem],
    pub overrides: Vec<Override>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective: Option<AgentConfig>,
}

/// Where the hardware level came from, in words.
fn level_source(config: &AgentConfig, identity: &Identity) -> String {
    let mut text = match identity.source {
        LevelSource::PartNumber => format!("from the part number {} in [hardware_levels]", config.part_number),
        LevelSource::Configured => "from hardware_level".to_string(),
        LevelSource::Probe => "from [hardware_probe]".to_string(),
    };
    if let Some(c) = &identity.conflict {
        text.push_str(&format!("; the {} says {}: the probe wins", c.other_source.as_str().replace('_', " "), c.other));
    }
    text
}

impl AgentConfig {
    /// The config as the agent uses it, for showing: passwords hidden unless `show_secrets`. Serialized, it
    /// has every default filled in.
    pub fn effective(&self, show_secrets: bool) -> AgentConfig {
        let mut shown = self.clone();
        if !show_secrets {
            let hide = |p: &mut Option<String>| {
                if p.is_some() {
                    *p = Some(REDACTED.into());
                }
            };
            hide(&mut shown.broker.password);
            if let Some(access) = &mut shown.access {
                hide(&mut access.password);
            }
        }
        shown
    }
}

/// Sets an override's value in the table, creating sections as needed. An environment variable's key parts
/// are matched to the known keys in any case; a value given as text where the key takes a string is that text.
fn apply(table: &mut toml::Table, o: &mut Override) -> Result<(), String> {
    if let Some(e) = &o.error {
        return Err(e.clone());
    }
    let mut level = table;
    let mut fields = Some(ROOT);
    let mut map_value: Option<&'static Kind> = None;
    let last = o.path.len().saturating_sub(1);
    for i in 0..o.path.len() {
        let field = fields.and_then(|f| f.iter().find(|f| keys_match(f.key, &o.path[i], o.case_insensitive)));
        if o.case_insensitive {
            o.path[i] = match field {
                Some(f) => f.key.to_string(),
                None => level.keys().find(|k| k.eq_ignore_ascii_case(&o.path[i])).cloned().unwrap_or_else(|| {
                    if map_value.is_some() {
                        o.path[i].clone()
                    } else {
                        o.path[i].to_lowercase()
                    }
                }),
            };
        }
        let kind = field.map(|f| &f.kind).or(map_value);
        if i == last {
            let takes_text = matches!(kind, Some(Kind::Str | Kind::Parsed(_)));
            if takes_text && !o.value.is_str() {
                o.value = toml::Value::String(o.raw.clone());
            }
            o.key = dotted(&o.path);
            level.insert(o.path[i].clone(), o.value.clone());
            return Ok(());
        }
        (fields, map_value) = match kind {
            Some(Kind::Section(f)) => (Some(*f), None),
            Some(Kind::Map { value, .. }) => (None, Some(*value)),
            _ => (None, None),
        };
        let entry = level.entry(o.path[i].clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(inner) = entry else {
            return Err(format!(
                "cannot set {}: {} is {}, not a section",
                dotted(&o.path),
                dotted(&o.path[..=i]),
                found(entry)
            ));
        };
        level = inner;
    }
    o.key = dotted(&o.path);
    Ok(())
}

fn keys_match(known: &str, given: &str, case_insensitive: bool) -> bool {
    if case_insensitive {
        known.eq_ignore_ascii_case(given)
    } else {
        known == given
    }
}

/// A problem before it is located: the key path it is about.
struct Finding {
    path: Vec<String>,
    message: String,
    suggestion: Option<String>,
}

impl Finding {
    fn new(path: &[&str], message: String) -> Finding {
        Finding { path: path.iter().map(|s| s.to_string()).collect(), message, suggestion: None }
    }

    fn locate(self, at: &Locator) -> Problem {
        Problem {
            key: (!self.path.is_empty()).then(|| dotted(&self.path)),
            origin: at.origin(&self.path),
            message: self.message,
            suggestion: self.suggestion,
        }
    }
}

/// Finds where a key's value came from: the last override that set it (or a section holding it), else its
/// place in the file.
struct Locator<'a> {
    text: &'a str,
    spans: Spans,
    overrides: &'a [Override],
}

impl Locator<'_> {
    fn origin(&self, path: &[String]) -> Origin {
        if let Some(o) = self.overrides.iter().rev().find(|o| !path.is_empty() && path.starts_with(&o.path)) {
            return o.origin.clone();
        }
        let (line, column) = self.spans.find(path).map(|at| line_column(self.text, at)).unzip();
        Origin::File { line, column }
    }
}

/// Line and column (1-based, in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// Where each key of the file is: a tree of key spans, read with toml's own parser.
#[derive(Debug, Default)]
struct Spans(Vec<(String, std::ops::Range<usize>, Spans)>);

impl Spans {
    /// The start of the deepest key of `path` found in the file.
    fn find(&self, path: &[String]) -> Option<usize> {
        let (first, rest) = path.split_first()?;
        let (_, span, inner) = self.0.iter().find(|(k, _, _)| k == first)?;
        inner.find(rest).or(Some(span.start))
    }
}

impl<'de> Deserialize<'de> for Spans {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SpansVisitor)
    }
}

struct SpansVisitor;

impl<'de> serde::de::Visitor<'de> for SpansVisitor {
    type Value = Spans;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Spans, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<toml::Spanned<String>>()? {
            let inner = map.next_value::<Spans>()?;
            let span = key.span();
            entries.push((key.into_inner(), span, inner));
        }
        Ok(Spans(entries))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Spans, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Spans::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Spans, E> {
        Ok(Spans::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Spans, E> {
        Ok(Spans::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Spans, E> {
        Ok(Spans::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Spans, E> {
        Ok(Spans::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Spans, E> {
        Ok(Spans::default())
    }
}

/// Checks a string: `Err` says why it is wrong.
type Validate = fn(&str) -> Result<(), String>;

/// What a key takes.
#[derive(Clone, Copy)]
enum Kind {
    /// Any string.
    Str,
    /// A string that must parse (a version, a device id); the function says why not.
    Parsed(Validate),
    /// A whole number in a range.
    Int { min: i64, max: i64 },
    /// A list of strings: a program and its arguments, labels.
    List,
    /// A section of known keys.
    Section(&'static [Field]),
    /// A section of free keys (part numbers, hardware levels), each checked by `key`, to values of one kind.
    Map { key: Option<Validate>, value: &'static Kind },
}

/// A key of the config: what it takes, whether it must be there, and an example for messages.
struct Field {
    key: &'static str,
    kind: Kind,
    required: bool,
    example: &'static str,
}

const fn req(key: &'static str, kind: Kind, example: &'static str) -> Field {
    Field { key, kind, required: true, example }
}

const fn opt(key: &'static str, kind: Kind, example: &'static str) -> Field {
    Field { key, kind, required: false, example }
}

const NUMBER: i64 = i64::MAX;
const LEVEL: Kind = Kind::Int { min: 0, max: u16::MAX as i64 };
const SECONDS: Kind = Kind::Int { min: 1, max: NUMBER };

fn valid_device_id(s: &str) -> Result<(), String> {
    DeviceId::new(s).map(drop).map_err(|e| e.to_string())
}

fn valid_version(s: &str) -> Result<(), String> {
    s.parse::<SoftwareVersion>().map(drop).map_err(|e| e.to_string())
}

fn valid_level_key(s: &str) -> Result<(), String> {
    match s.trim().parse::<u16>() {
        Ok(n) if n.to_string() == s => Ok(()),
        Ok(n) => Err(format!("is never looked up: write the hardware level as \"{n}\"")),
        Err(_) => Err("is not a hardware level: use a number from 0 to 65535, e.g. \"3\" = \"V3 R2.0.0\"".into()),
    }
}

/// The config's keys. A unit test keeps this in step with [`AgentConfig`].
static ROOT: &[Field] = &[
    req("device_id", Kind::Parsed(valid_device_id), "\"phone-0001\""),
    req("part_number", Kind::Str, "\"S30817-S7702-A101\""),
    req("software_version", Kind::Parsed(valid_version), "\"V3 R3.11.0\""),
    req("minimum_software_version", Kind::Parsed(valid_version), "\"V3 R1.0.0\""),
    opt("hardware_level", LEVEL, "3"),
    opt("hardware_levels", Kind::Map { key: None, value: &LEVEL }, "\"S30817-S7702-A101\" = 3"),
    opt("model", Kind::Str, "\"CP400\""),
    opt("labels", Kind::List, "[\"site=munich\", \"pilot\"]"),
    req("state_dir", Kind::Str, "\"/var/lib/bindwave-agent\""),
    req("broker", Kind::Section(BROKER), "url = \"mqtt://bindwave.example:1883\""),
    opt("report_retry_secs", SECONDS, "10"),
    opt("download", Kind::Section(DOWNLOAD), "attempts = 10"),
    opt("access", Kind::Section(ACCESS), "protocol = \"https\""),
    opt("hardware_probe", Kind::Section(PROBE), "command = [\"/usr/bin/hw-level\"]"),
    opt("health", Kind::Section(HEALTH), "check_command = [\"/usr/bin/phone-selftest\"]"),
    opt("installer", Kind::Section(INSTALLER), "command = [\"/usr/sbin/flash-image\", \"{payload}\"]"),
    opt("indicator", Kind::Section(INDICATOR), "command = [\"/usr/bin/phone-leds\"]"),
    opt(
        "minimum_software_versions",
        Kind::Map { key: Some(valid_level_key), value: &Kind::Parsed(valid_version) },
        "\"3\" = \"V3 R2.0.0\"",
    ),
];

static BROKER: &[Field] = &[
    req("url", Kind::Str, "\"mqtt://bindwave.example:1883\""),
    opt("username", Kind::Str, "\"phone\""),
    opt("password", Kind::Str, "\"secret\""),
];

static DOWNLOAD: &[Field] = &[
    opt("attempts", Kind::Int { min: 1, max: u32::MAX as i64 }, "10"),
    opt("backoff_ms", Kind::Int { min: 0, max: NUMBER }, "500"),
    opt("max_backoff_secs", Kind::Int { min: 0, max: NUMBER }, "30"),
    opt("ca_file", Kind::Str, "\"/etc/bindwave/fleet-ca.pem\""),
    opt("timeout_secs", SECONDS, "21600"),
];

static ACCESS: &[Field] = &[
    req("protocol", Kind::Str, "\"https\""),
    req("server", Kind::Str, "\"files.example\""),
    opt("port", Kind::Int { min: 1, max: u16::MAX as i64 }, "443"),
    opt("user", Kind::Str, "\"phone\""),
    opt("password", Kind::Str, "\"secret\""),
    opt("path", Kind::Str, "\"/binds\""),
];

static PROBE: &[Field] =
    &[opt("command", Kind::List, "[\"/usr/bin/hw-level\"]"), opt("file", Kind::Str, "\"/sys/firmware/hw_level\"")];

static HEALTH: &[Field] = &[
    opt("reboot_command", Kind::List, "[\"/sbin/reboot\"]"),
    opt("check_command", Kind::List, "[\"/usr/bin/phone-selftest\"]"),
    opt("check_timeout_secs", SECONDS, "60"),
];

static INSTALLER: &[Field] =
    &[opt("command", Kind::List, "[\"/usr/sbin/flash-image\", \"{payload}\"]"), opt("timeout_secs", SECONDS, "600")];

static INDICATOR: &[Field] =
    &[opt("command", Kind::List, "[\"/usr/bin/phone-leds\"]"), opt("file", Kind::Str, "\"/run/bindwave/state.json\"")];

/// Checks a section's keys against the known ones; returns the section without the keys found wrong, so the
/// rest can still be checked for meaning.
fn check_section(
    table: &toml::Table,
    fields: &'static [Field],
    path: &[String],
    out: &mut Vec<Finding>,
) -> toml::Table {
    let mut cleaned = toml::Table::new();
    let mut suggested = Vec::new();
    for (key, value) in table {
        let mut here = path.to_vec();
        here.push(key.clone());
        let Some(field) = fields.iter().find(|f| f.key == key) else {
            let (message, suggestion) = unknown_key(&here, value, fields);
            if let Some(s) = &suggestion {
                suggested.push(s.clone());
            }
            out.push(Finding { path: here, message, suggestion });
            continue;
        };
        if let Some(v) = check_value(&field.kind, field.example, value, &here, out) {
            cleaned.insert(key.clone(), v);
        }
    }
    for field in fields.iter().filter(|f| f.required && !table.contains_key(f.key)) {
        // A misspelled key already says what to write instead.
        if suggested.iter().any(|s| s == field.key) {
            continue;
        }
        let message = match field.kind {
            Kind::Section(_) => format!("missing section [{}], with at least {}", field.key, field.example),
            _ => format!("missing key {}, e.g. {} = {}", name(path, field.key), field.key, field.example),
        };
        out.push(Finding { path: path.to_vec(), message, suggestion: None });
    }
    cleaned
}

/// A value of a known key, checked; `None` (and a finding) if it is wrong.
fn check_value(
    kind: &Kind,
    example: &str,
    value: &toml::Value,
    path: &[String],
    out: &mut Vec<Finding>,
) -> Option<toml::Value> {
    use toml::Value as V;
    // A secret's value is not repeated in a message, only its type.
    let shown = match path.last() {
        Some(k) if is_secret(k) => format!("a value of type {}", value.type_str()),
        _ => found(value),
    };
    let mismatch =
        |hint: &str| format!("{} must be {}; found {shown}{hint}", describe(path, kind), expected(kind, example));
    match (kind, value) {
        (Kind::Str, V::String(_)) => Some(value.clone()),
        (Kind::Parsed(parse), V::String(s)) => match parse(s) {
            Ok(()) => Some(value.clone()),
            Err(e) => wrong_value(out, path, format!("{}: {e}", describe(path, kind))),
        },
        (Kind::Int { min, max }, V::Integer(i)) if (*min..=*max).contains(i) => Some(value.clone()),
        (Kind::Int { .. }, V::String(s)) if s.trim().parse::<i64>().is_ok() => {
            wrong_value(out, path, mismatch(": remove the quotes"))
        }
        (Kind::List, V::Array(items)) => match items.iter().position(|i| !i.is_str()) {
            None => Some(value.clone()),
            Some(n) => wrong_value(out, path, mismatch(&format!(" whose item {} is {}", n + 1, found(&items[n])))),
        },
        (Kind::List, V::String(s)) => {
            wrong_value(out, path, mismatch(&format!(": write a list, e.g. [{}]", V::String(s.clone()))))
        }
        (Kind::Section(fields), V::Table(t)) => Some(V::Table(check_section(t, fields, path, out))),
        (Kind::Map { key, value: inner }, V::Table(t)) => {
            let mut cleaned = toml::Table::new();
            for (k, v) in t {
                let mut here = path.to_vec();
                here.push(k.clone());
                if let Some(Err(e)) = key.map(|check| check(k)) {
                    let message = format!("key {} in [{}] {e}", toml::Value::String(k.clone()), dotted(path));
                    out.push(Finding { path: here, message, suggestion: None });
                    continue;
                }
                if ROOT.iter().any(|f| f.key == k && !matches!(f.kind, Kind::Section(_) | Kind::Map { .. })) {
                    // A top-level key written after this section's header lands in it.
                    let message =
                        format!("`{k}` in [{}] is a top-level key: move it before the first [section]", dotted(path));
                    out.push(Finding { path: here, message, suggestion: Some(k.clone()) });
                    continue;
                }
                if let Some(v) = check_value(inner, &example_of(inner), v, &here, out) {
                    cleaned.insert(k.clone(), v);
                }
            }
            Some(V::Table(cleaned))
        }
        _ => wrong_value(out, path, mismatch("")),
    }
}

fn wrong_value(out: &mut Vec<Finding>, path: &[String], message: String) -> Option<toml::Value> {
    out.push(Finding { path: path.to_vec(), message, suggestion: None });
    None
}

fn example_of(kind: &Kind) -> String {
    match kind {
        Kind::Int { .. } => "3".into(),
        _ => "\"V3 R2.0.0\"".into(),
    }
}

/// How a message names a key: `attempts` in [download], or [download] for a section.
fn describe(path: &[String], kind: &Kind) -> String {
    match (path.split_last(), kind) {
        (Some((_, [])), Kind::Section(_) | Kind::Map { .. }) => format!("[{}]", dotted(path)),
        (Some((last, parent)), _) => name(parent, last),
        (None, _) => "the config".into(),
    }
}

fn name(parent: &[String], key: &str) -> String {
    if parent.is_empty() {
        format!("`{key}`")
    } else {
        format!("`{key}` in [{}]", dotted(parent))
    }
}

fn expected(kind: &Kind, example: &str) -> String {
    match kind {
        Kind::Str | Kind::Parsed(_) => format!("a string, e.g. {example}"),
        Kind::Int { min, max } if *max == NUMBER => format!("a whole number of at least {min}, e.g. {example}"),
        Kind::Int { min, max } => format!("a whole number from {min} to {max}, e.g. {example}"),
        Kind::List => format!("a list of strings, e.g. {example}"),
        Kind::Section(_) | Kind::Map { .. } => format!("a section, with e.g. {example}"),
    }
}

/// A value as messages name it: `the string "ten"`, `the number 0`, `a list`.
fn found(value: &toml::Value) -> String {
    use toml::Value as V;
    match value {
        V::String(_) => {
            let mut shown = value.to_string();
            if shown.chars().count() > 60 {
                shown = shown.chars().take(57).collect::<String>() + "...";
            }
            format!("the string {shown}")
        }
        V::Integer(i) => format!("the number {i}"),
        V::Float(f) => format!("the number {f}"),
        V::Boolean(b) => format!("{b}"),
        V::Datetime(d) => format!("the date {d}"),
        V::Array(_) => "a list".into(),
        V::Table(_) => "a section".into(),
    }
}

/// "unknown key `atempts` in [download]; did you mean `attempts`?", or where the key belongs if it is known
/// elsewhere (a top-level key written after a [section] header is the classic TOML slip).
fn unknown_key(path: &[String], value: &toml::Value, fields: &'static [Field]) -> (String, Option<String>) {
    let Some((key, parent)) = path.split_last() else { return ("unknown key".into(), None) };
    let section = parent.is_empty() && value.is_table();
    let what = match (section, parent.is_empty()) {
        (true, _) => format!("unknown section [{key}]"),
        (false, true) => format!("unknown key `{key}`"),
        (false, false) => format!("unknown key `{key}` in [{}]", dotted(parent)),
    };
    if let Some(near) = nearest(key, fields.iter().map(|f| f.key)) {
        let near_shown = if section { format!("[{near}]") } else { format!("`{near}`") };
        return (format!("{what}; did you mean {near_shown}?"), Some(near.to_string()));
    }
    // Known elsewhere: at the top level, or in another section.
    if !parent.is_empty() && ROOT.iter().any(|f| f.key == key && !matches!(f.kind, Kind::Section(_))) {
        return (format!("{what}; it belongs at the top level, before the first [section]"), Some(key.clone()));
    }
    for f in ROOT {
        if let Kind::Section(inner) = f.kind {
            if f.key != parent.first().map_or("", String::as_str) && inner.iter().any(|i| i.key == key) {
                return (format!("{what}; it belongs in [{}]", f.key), Some(format!("{}.{key}", f.key)));
            }
        }
    }
    let known: Vec<&str> = fields.iter().map(|f| f.key).collect();
    (format!("{what}; the known keys here are: {}", known.join(", ")), None)
}

/// The known key nearest a misspelled one, if near enough to be what was meant. The controller's config
/// check uses it too.
pub fn nearest<'a>(given: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_ascii_lowercase().replace('-', "_");
    let limit = match given.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    known.map(|k| (edit_distance(&given, k), k)).filter(|(d, _)| *d <= limit).min_by_key(|(d, _)| *d).map(|(_, k)| k)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// What a well-formed config can still get wrong: the broker URL, the hardware level, the access protocol,
/// the CA file, empty commands. Returns the identity if it resolves.
fn check_meaning(config: &AgentConfig, out: &mut Vec<Finding>) -> Option<Identity> {
    if let Err(e) = crate::link::parse_broker_url(&config.broker.url) {
        out.push(Finding::new(&["broker", "url"], e.to_string()));
    }
    let probe_command = config.hardware_probe.as_ref().and_then(|p| p.command.as_ref());
    let commands = [
        (INSTALLER, ["installer", "command"], config.installer.command.as_ref()),
        (HEALTH, ["health", "reboot_command"], config.health.reboot_command.as_ref()),
        (HEALTH, ["health", "check_command"], config.health.check_command.as_ref()),
        (INDICATOR, ["indicator", "command"], config.indicator.command.as_ref()),
        (PROBE, ["hardware_probe", "command"], probe_command),
    ];
    let mut probe_usable = true;
    for (fields, [section, key], command) in commands {
        if command.is_some_and(|c| c.first().is_none_or(|program| program.trim().is_empty())) {
            let example = fields.iter().find(|f| f.key == key).map_or("", |f| f.example);
            out.push(Finding::new(
                &[section, key],
                format!("`{key}` in [{section}] is empty: give the program and its arguments, e.g. {example}, or remove the key"),
            ));
            probe_usable &= section != "hardware_probe";
        }
    }
    if let Some(access) = &config.access {
        if !matches!(access.protocol.to_ascii_lowercase().as_str(), "http" | "https" | "ftp" | "ftps") {
            out.push(Finding::new(
                &["access", "protocol"],
                format!("access protocol {:?} is not supported: use http, https, ftp or ftps", access.protocol),
            ));
        }
        if access.server.trim().is_empty() {
            out.push(Finding::new(
                &["access", "server"],
                "`server` in [access] is empty: give the file server's host name".into(),
            ));
        }
    }
    if let Some(ca) = &config.download.ca_file {
        if let Err(e) = crate::Transport::new(Some(ca)) {
            let detail = match &e {
                AgentError::HttpClient(d) => d.clone(),
                other => crate::error::chain(other),
            };
            out.push(Finding::new(&["download", "ca_file"], format!("`ca_file` in [download]: {detail}")));
        }
    }
    if !probe_usable {
        return None;
    }
    match config.identity() {
        Ok(identity) => Some(identity),
        Err(e) => {
            let (path, message): (&[&str], String) = match e {
                AgentError::ConfigInvalid(m) => (&["part_number"], m),
                other => (&["hardware_probe"], other.to_string()),
            };
            out.push(Finding::new(path, message));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<AgentConfig, toml::de::Error> {
        toml::from_str(&format!(
            r#"
            device_id = "phone-1"
            part_number = "P1"
            software_version = "V3 R3.0.0"
            minimum_software_version = "V3 R1.0.0"
            state_dir = "/tmp/x"
            {extra}
            [broker]
            url = "mqtt://127.0.0.1:1883"
            "#
        ))
    }

    #[test]
    fn level_from_the_part_number_table_or_a_fixed_value() {
        let c = parse("[hardware_levels]\nP1 = 4\n").unwrap();
        assert_eq!(
            c.identity().unwrap(),
            Identity { hardware_level: HardwareLevel(4), source: LevelSource::PartNumber, conflict: None }
        );
        let c = parse("hardware_level = 2").unwrap();
        assert_eq!(
            c.identity().unwrap(),
            Identity { hardware_level: HardwareLevel(2), source: LevelSource::Configured, conflict: None }
        );
    }

    #[test]
    fn the_probe_wins_and_a_disagreement_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("level");
        std::fs::write(&file, "5\n").unwrap();
        let c =
            parse(&format!("[hardware_levels]\nP1 = 4\n[hardware_probe]\nfile = {:?}\n", file.display().to_string()))
                .unwrap();
        let id = c.identity().unwrap();
        assert_eq!((id.hardware_level, id.source), (HardwareLevel(5), LevelSource::Probe));
        assert_eq!(
            id.conflict,
            Some(LevelConflict {
                probe: HardwareLevel(5),
                other: HardwareLevel(4),
                other_source: LevelSource::PartNumber
            })
        );
        // Agreeing sources: no conflict.
        std::fs::write(&file, "4").unwrap();
        assert_eq!(c.identity().unwrap().conflict, None);
        // A command works the same way.
        let c = parse("[hardware_probe]\ncommand = [\"echo\", \"7\"]\n").unwrap();
        assert_eq!(c.identity().unwrap().hardware_level, HardwareLevel(7));
        // A probe that says nonsense is a clear error.
        std::fs::write(&file, "level three").unwrap();
        let c = parse(&format!("[hardware_probe]\nfile = {:?}\n", file.display().to_string())).unwrap();
        assert!(c.identity().unwrap_err().to_string().contains("not a hardware level"));
        let c = parse("[hardware_probe]\ncommand = [\"false\"]\n").unwrap();
        assert!(c.identity().unwrap_err().to_string().contains("exited"));
    }

    #[test]
    fn the_minimum_can_depend_on_the_hardware_level() {
        let c = parse("[minimum_software_versions]\n\"3\" = \"V3 R2.0.0\"\n").unwrap();
        assert_eq!(c.minimum_for(HardwareLevel(3)).to_string(), "V3 R2.0.0");
        assert_eq!(c.minimum_for(HardwareLevel(4)).to_string(), "V3 R1.0.0");
    }

    #[test]
    fn default_access_settings_make_a_url_from_a_file_name() {
        let a = AccessSettings {
            protocol: "HTTPS".into(),
            server: "files.example".into(),
            port: Some(8443),
            user: None,
            password: None,
            path: "/binds/".into(),
        };
        assert_eq!(a.url_for("fw.bind").unwrap(), "https://files.example:8443/binds/fw.bind");
        for bad in ["", "../etc/passwd", "a/b.bind", ".."] {
            assert!(a.url_for(bad).is_err(), "{bad}");
        }
        let ftp = AccessSettings { protocol: "ftp".into(), port: None, ..a.clone() };
        assert_eq!(ftp.url_for("fw.bind").unwrap(), "ftp://files.example/binds/fw.bind");
        let ftps = AccessSettings { protocol: "FTPS".into(), port: Some(990), ..a.clone() };
        assert_eq!(ftps.url_for("fw.bind").unwrap(), "ftps://files.example:990/binds/fw.bind");
        let sftp = AccessSettings { protocol: "sftp".into(), ..a };
        assert!(sftp.url_for("fw.bind").unwrap_err().contains("not supported"));
    }

    #[test]
    fn unknown_part_number_is_a_clear_error() {
        let c = parse("").unwrap();
        let e = c.identity().unwrap_err().to_string();
        assert!(e.contains("P1") && e.contains("[hardware_levels]"), "{e}");
    }

    #[test]
    fn typos_and_bad_versions_are_refused() {
        assert!(parse("hardware_levle = 2").unwrap_err().to_string().contains("hardware_levle"));
        let e = toml::from_str::<AgentConfig>(
            "device_id='a'\npart_number='p'\nsoftware_version='latest'\nminimum_software_version='1'\nstate_dir='/'\n[broker]\nurl='mqtt://x'",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("latest"), "{e}");
    }

    #[test]
    fn a_job_limit_is_the_shorter_of_the_agents_and_the_commands() {
        let d = DownloadSettings { timeout_secs: 600, ..DownloadSettings::default() };
        let mut cmd = bindwave_proto::wire::UpdateCommand {
            job_id: "j".into(),
            rollout_id: "r".into(),
            url: "http://x/fw.bind".into(),
            size: 1,
            sha256: "00".into(),
            override_compat: false,
            use_defaults: false,
            timeout_secs: None,
        };
        assert_eq!(d.limit_for(&cmd).as_secs(), 600);
        cmd.timeout_secs = Some(60);
        assert_eq!(d.limit_for(&cmd).as_secs(), 60);
        cmd.timeout_secs = Some(7200);
        assert_eq!(d.limit_for(&cmd).as_secs(), 600);
        cmd.timeout_secs = Some(0);
        assert_eq!(d.limit_for(&cmd).as_secs(), 1);
    }

    const GOOD: &str = r#"device_id = "phone-1"
part_number = "P1"
software_version = "V3 R3.0.0"
minimum_software_version = "V3 R1.0.0"
state_dir = "/tmp/x"

[broker]
url = "mqtt://127.0.0.1:1883"

[hardware_levels]
P1 = 3
"#;

    fn check_with(text: &str, overrides: &[Override]) -> Check {
        check_text(Path::new("agent.toml"), text, overrides)
    }

    fn env(vars: &[(&str, &str)]) -> Vec<Override> {
        Override::from_env(vars.iter().map(|(k, v)| (k.into(), v.into())))
    }

    fn messages(c: &Check) -> Vec<String> {
        c.problems.iter().map(|p| p.to_string()).collect()
    }

    /// Every key of a fully populated config, as dotted paths (free-key sections as one key).
    fn struct_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) if !matches!(k.as_str(), "hardware_levels" | "minimum_software_versions") => {
                    struct_keys(t, &key, out)
                }
                _ => out.push(key),
            }
        }
    }

    fn schema_keys(fields: &[Field], prefix: &str, out: &mut Vec<String>) {
        for f in fields {
            let key = if prefix.is_empty() { f.key.to_string() } else { format!("{prefix}.{}", f.key) };
            match f.kind {
                Kind::Section(inner) => schema_keys(inner, &key, out),
                _ => out.push(key),
            }
        }
    }

    #[test]
    fn the_checked_keys_are_the_configs_keys() {
        let full = format!(
            "{GOOD}\
             [minimum_software_versions]\n\"3\" = \"V3 R2.0.0\"\n\
             [download]\nca_file = \"/ca.pem\"\n\
             [access]\nprotocol = \"ftp\"\nserver = \"s\"\nport = 21\nuser = \"u\"\npassword = \"p\"\npath = \"/\"\n\
             [hardware_probe]\ncommand = [\"x\"]\nfile = \"/f\"\n\
             [health]\nreboot_command = [\"r\"]\ncheck_command = [\"c\"]\ncheck_timeout_secs = 1\n\
             [installer]\ncommand = [\"i\"]\ntimeout_secs = 1\n\
             [indicator]\ncommand = [\"l\"]\nfile = \"/s\"\n"
        )
        .replace("state_dir", "hardware_level = 3\nmodel = \"m\"\nlabels = [\"a\"]\nstate_dir")
        .replace("[broker]\n", "[broker]\nusername = \"u\"\npassword = \"p\"\n");
        let config: AgentConfig = toml::from_str(&full).unwrap();
        let mut from_struct = Vec::new();
        struct_keys(&toml::Table::try_from(&config).unwrap(), "", &mut from_struct);
        let mut from_schema = Vec::new();
        schema_keys(ROOT, "", &mut from_schema);
        from_struct.sort();
        from_schema.sort();
        assert_eq!(from_struct, from_schema, "the schema in config.rs and AgentConfig disagree");
    }

    #[test]
    fn a_good_config_is_valid_and_resolves_its_identity() {
        let c = check_with(GOOD, &[]);
        assert!(c.is_valid(), "{:?}", c.problems);
        assert_eq!(c.identity.as_ref().unwrap().hardware_level, HardwareLevel(3));
        assert!(c.text().contains("from the part number P1"), "{}", c.text());
        assert_eq!(serde_json::to_value(c.report()).unwrap()["hardware_level_source"], "part_number");
    }

    #[test]
    fn a_typo_is_reported_with_its_place_and_the_key_meant() {
        let c = check_with(&GOOD.replace("[hardware_levels]", "[download]\natempts = 3\n\n[hardware_levels]"), &[]);
        assert_eq!(messages(&c), ["line 11, column 1: unknown key `atempts` in [download]; did you mean `attempts`?"]);
        assert_eq!(c.problems[0].suggestion.as_deref(), Some("attempts"));
        assert_eq!(c.problems[0].key.as_deref(), Some("download.atempts"));
        // A misspelled required key is one problem, not two (unknown + missing).
        let c = check_with(&GOOD.replace("state_dir", "statedir"), &[]);
        assert_eq!(messages(&c), ["line 5, column 1: unknown key `statedir`; did you mean `state_dir`?"]);
        // A top-level key written after a section header.
        let c =
            check_with(&GOOD.replace("[hardware_levels]", "[download]\nreport_retry_secs = 5\n[hardware_levels]"), &[]);
        assert!(messages(&c)[0].contains("it belongs at the top level"), "{:?}", messages(&c));
        let c = check_with(&format!("{GOOD}report_retry_secs = 5\n"), &[]);
        assert!(
            messages(&c)[0].contains("is a top-level key: move it before the first [section]"),
            "{:?}",
            messages(&c)
        );
        let c = check_with(&GOOD.replace("[broker]", "attempts = 3\n[broker]"), &[]);
        assert!(messages(&c)[0].ends_with("unknown key `attempts`; it belongs in [download]"), "{:?}", messages(&c));
    }

    #[test]
    fn a_syntax_error_has_its_line_and_column() {
        let c = check_with(&GOOD.replace("P1 = 3", "P1 = = 3"), &[]);
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.problems[0].origin, Origin::File { line: Some(11), column: Some(6) });
        assert!(c.problems[0].message.starts_with("TOML syntax error: "), "{}", c.problems[0].message);
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let text = GOOD
            .replace("mqtt://127.0.0.1:1883", "http://broker")
            .replace("P1 = 3", "P2 = 3")
            .replace("[broker]", "labels = \"pilot\"\n[download]\nattempts = 0\n[installer]\ncommand = []\n[broker]");
        let c = check_with(&text, &[]);
        let m = messages(&c);
        assert_eq!(m.len(), 5, "{m:#?}");
        assert!(m.iter().any(|p| p.contains("`labels` must be a list of strings") && p.contains("[\"pilot\"]")));
        assert!(m.iter().any(|p| p.contains("`attempts` in [download] must be a whole number from 1")));
        assert!(m.iter().any(|p| p.contains("`command` in [installer] is empty")));
        assert!(m.iter().any(|p| p.contains("invalid broker url \"http://broker\"")));
        assert!(m.iter().any(|p| p.contains("no hardware level for part number \"P1\"")));
        // In the file's order.
        let lines: Vec<usize> = c
            .problems
            .iter()
            .filter_map(|p| match p.origin {
                Origin::File { line, .. } => line,
                _ => None,
            })
            .collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
        let e = check_with(&text, &[]).into_config().unwrap_err().to_string();
        assert!(e.starts_with("agent config agent.toml is invalid: 5 problems:\n  line "), "{e}");
    }

    #[test]
    fn flags_win_over_the_environment_and_the_environment_over_the_file() {
        let mut o = env(&[
            ("bindwave_agent__Download__Attempts", "4"),
            ("BINDWAVE_AGENT__DEVICE_ID", "phone-9"),
            ("BINDWAVE_AGENT__BROKER__URL", "mqtt://env:1883"),
            ("BINDWAVE_AGENT_CONFIG", "/not/an/override.toml"),
            ("OTHER", "x"),
        ]);
        assert_eq!(o.len(), 3);
        o.push(Override::parse_set("broker.url=mqtt://flag:1883").unwrap());
        o.push(Override::parse_set("hardware_levels.\"P1\"=5").unwrap());
        let c = check_with(GOOD, &o);
        let config = c.config.as_ref().unwrap_or_else(|| panic!("{:?}", c.problems));
        assert_eq!(config.download.attempts, 4);
        assert_eq!(config.device_id.as_str(), "phone-9");
        assert_eq!(config.broker.url, "mqtt://flag:1883");
        assert_eq!(c.identity.as_ref().unwrap().hardware_level, HardwareLevel(5));
        let keys: Vec<&str> = c.overrides.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["broker.url", "device_id", "download.attempts", "broker.url", "hardware_levels.P1"]);
    }

    #[test]
    fn values_are_toml_or_else_text_and_text_where_a_key_takes_text() {
        let set = |a: &str| Override::parse_set(a).unwrap();
        assert_eq!(set("download.attempts=3").value, toml::Value::Integer(3));
        assert_eq!(set("device_id=phone-9").value, toml::Value::String("phone-9".into()));
        assert_eq!(set("labels=[\"a\", \"b\"]").value.as_array().map(Vec::len), Some(2));
        assert_eq!(set("model=").value, toml::Value::String(String::new()));
        assert_eq!(set("hardware_levels.\"S30817-S7702-A101\"=3").path, ["hardware_levels", "S30817-S7702-A101"]);
        assert_eq!(set("a.'b=c'=1").path, ["a", "b=c"]);
        assert!(Override::parse_set("attempts").unwrap_err().contains("KEY=VALUE"));
        assert!(Override::parse_set("a..b=1").unwrap_err().contains("not a config key"));
        // `inf` is a TOML float, `123` an integer: where the key takes a string, they are that text.
        let c = check_with(GOOD, &[set("model=inf"), set("device_id=123"), set("software_version=V3 R4.0.0")]);
        let config = c.config.as_ref().unwrap_or_else(|| panic!("{:?}", c.problems));
        assert_eq!((config.model.as_deref(), config.device_id.as_str()), (Some("inf"), "123"));
        assert_eq!(config.software_version.to_string(), "V3 R4.0.0");
    }

    #[test]
    fn a_bad_override_is_reported_with_the_variable_or_flag_it_came_from() {
        let mut o = env(&[("BINDWAVE_AGENT__DOWNLOAD__ATEMPTS", "3"), ("BINDWAVE_AGENT__BROKER____URL", "x")]);
        o.push(Override::flag("--broker", &["broker", "url"], "http://x"));
        o.push(Override::parse_set("device_id.x=1").unwrap());
        let m = messages(&check_with(GOOD, &o));
        assert_eq!(
            m,
            [
                "BINDWAVE_AGENT__BROKER____URL: a part of the key is empty: separate the parts with two \
                 underscores, e.g. BINDWAVE_AGENT__DOWNLOAD__ATTEMPTS",
                "BINDWAVE_AGENT__DOWNLOAD__ATEMPTS: unknown key `atempts` in [download]; did you mean `attempts`?",
                "--set device_id.x=1: cannot set device_id.x: device_id is the string \"phone-1\", not a section",
                "--broker: invalid broker url \"http://x\": only mqtt:// is supported (expected mqtt://host:port)",
            ]
        );
    }

    #[test]
    fn keys_are_found_in_dotted_keys_and_inline_tables() {
        let text = "device_id = \"a\"\ndownload.atempts = 1\nbroker = { url = \"mqtt://x\", user = \"u\" }\n";
        let spans: Spans = toml::from_str(text).unwrap();
        let at = |p: &[&str]| {
            let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            spans.find(&p).map(|o| line_column(text, o))
        };
        assert_eq!(at(&["download", "atempts"]), Some((2, 10)));
        assert_eq!(at(&["broker", "user"]), Some((3, 30)));
        assert_eq!(at(&["broker", "nothing"]), Some((3, 1)));
        assert_eq!(at(&["nothing"]), None);
    }

    #[test]
    fn the_nearest_key_is_a_few_edits_away() {
        assert_eq!(edit_distance("atempts", "attempts"), 1);
        assert_eq!(edit_distance("hardware_levle", "hardware_level"), 1);
        assert_eq!(nearest("Ca-File", DOWNLOAD.iter().map(|f| f.key)), Some("ca_file"));
        assert_eq!(nearest("colour", DOWNLOAD.iter().map(|f| f.key)), None);
    }

    #[test]
    fn secrets_are_hidden_when_shown() {
        let c = check_with(GOOD, &[Override::parse_set("broker.password=hunter2").unwrap()]);
        assert!(!c.text().contains("hunter2") && c.text().contains("broker.password=********"), "{}", c.text());
        assert!(!serde_json::to_string(&c.report()).unwrap().contains("hunter2"));
        let config = c.config.unwrap();
        assert_eq!(config.effective(false).broker.password.as_deref(), Some("********"));
        assert_eq!(config.effective(true).broker.password.as_deref(), Some("hunter2"));
        let m = messages(&check_with(&GOOD.replace("[broker]", "[broker]\npassword = 1234"), &[]));
        assert_eq!(m, ["line 8, column 1: `password` in [broker] must be a string, e.g. \"secret\"; found a value of type integer"]);
    }
}
