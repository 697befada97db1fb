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
    pub fn load(path: &Path) -> Result<Self, AgentError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AgentError::ConfigRead { path: path.into(), source })?;
        let config: AgentConfig =
            toml::from_str(&text).map_err(|e| AgentError::ConfigParse { path: path.into(), detail: e.to_string() })?;
        config.identity()?;
        crate::link::parse_broker_url(&config.broker.url)?;
        Ok(config)
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
}
