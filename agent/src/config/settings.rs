//! The settings themselves: what the agent's TOML config holds. These structs are the only list of keys:
//! their serde derive (field names, types, `#[serde(default)]` for optional keys, `deny_unknown_fields`) is
//! what the checker reads and checks, and `agent/agent.example.toml` gives each key an example.

use std::collections::BTreeMap;
use std::num::{NonZeroU16, NonZeroU32};
use std::path::PathBuf;

use bindwave_proto::wire::DeviceId;
use bindwave_proto::{DeviceProfile, HardwareLevel, SoftwareVersion};
use bindwave_settings::duration::{millis, opt_secs, secs, secs_or_zero};
use serde::{Deserialize, Serialize};

use super::Identity;

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
    /// The phone's time zone, an IANA name (`Europe/Berlin`), reported in hello: rollouts' maintenance windows
    /// are in it. Without it, a rollout's own `--timezone` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub state_dir: PathBuf,
    pub broker: BrokerSettings,
    /// Seconds between repeats of a final report the controller has not acknowledged yet.
    #[serde(default = "default_report_retry_secs", deserialize_with = "secs")]
    pub report_retry_secs: u64,
    /// Seconds between heartbeats: the phone publishes its presence again, so that the controller can tell it
    /// is there even when a broker restart lost its last will. Its hello says how often; the controller takes
    /// a phone silent for three heartbeats as offline.
    #[serde(default = "default_heartbeat_secs", deserialize_with = "secs")]
    pub heartbeat_secs: u64,
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
    /// The keys this phone trusts. Without `insecure_lab`, at least one release key is required.
    #[serde(default)]
    pub trust: TrustSettings,
}

/// `[trust]`: the public keys this phone pins. Release keys sign binds: with one pinned, the phone installs
/// only binds signed by a pinned key, and decides so from the header, before the payload is downloaded.
/// More than one may be pinned, so a key can be rotated without stranding a phone. Each key is
/// `ed25519:<64 hex digits>` (what `bindwave image keygen` prints) or a PEM public key (its `.pub` file).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustSettings {
    /// Release keys, written in the config.
    pub keys: Vec<String>,
    /// Release keys, each in a file of its own (`release.key.pub`).
    pub key_files: Vec<PathBuf>,
    /// The controller's command-signing keys, written in the config.
    pub controller_keys: Vec<String>,
    /// The controller's command-signing keys, each in a file of its own (`controller.key.pub`).
    pub controller_key_files: Vec<PathBuf>,
    /// A lab phone: unsigned binds are accepted (a signed bind must still verify), and a plain `mqtt://` broker. Never
    /// on a real fleet; the agent says so at every start.
    pub insecure_lab: bool,
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
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "opt_secs")]
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
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "opt_secs")]
    pub check_timeout_secs: Option<u64>,
}

impl HealthSettings {
    pub fn configured(&self) -> bool {
        self.reboot_command.is_some() || self.check_command.is_some()
    }
}

/// `[hardware_probe]`: a command that prints the level, or a file that holds it. It runs once, when the config
/// is checked at start (see [`super::probe`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    /// Program and arguments, e.g. `["/usr/bin/hw-level", "--numeric"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Seconds the command may take before the start fails. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_secs")]
    pub timeout_secs: Option<u64>,
}

/// `[access]`: where binds are when a command says "use defaults", as in the phone's FTP/HTTPS access data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSettings {
    /// `http`, `https`, `ftp` or `ftps` (explicit AUTH TLS; implicit TLS when `port` is 990).
    pub protocol: String,
    pub server: String,
    /// 1 to 65535.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "port")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The directory on the server, e.g. `/binds`.
    #[serde(default)]
    pub path: String,
}

/// The protocols `[access]` may name.
pub(crate) const ACCESS_PROTOCOLS: [&str; 4] = ["http", "https", "ftp", "ftps"];

impl AccessSettings {
    /// The URL of `file` on the default server. A file name with a path in it is refused.
    pub fn url_for(&self, file: &str) -> Result<String, String> {
        if file.is_empty() || file.contains('/') || file.contains('\\') || file == "." || file == ".." {
            return Err(format!("{file:?} is not a plain file name (use defaults takes only a name)"));
        }
        let protocol = self.protocol.to_ascii_lowercase();
        if !ACCESS_PROTOCOLS.contains(&protocol.as_str()) {
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
    /// Attempts in all, the first included: at least 1.
    #[serde(deserialize_with = "at_least_one")]
    pub attempts: u32,
    /// The first pause between attempts, in milliseconds; it doubles each time, with jitter.
    #[serde(deserialize_with = "millis")]
    pub backoff_ms: u64,
    /// The longest pause between attempts, in seconds.
    #[serde(deserialize_with = "secs_or_zero")]
    pub max_backoff_secs: u64,
    /// Extra CA certificates (PEM) to trust for https:// and ftps:// downloads, e.g. the private CA of the
    /// fleet's servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The longest a job may take to download and verify its bind, retries included, in seconds from when the
    /// agent took the job up; then it is abandoned and reported `timed_out`. A command's own `timeout_secs` (the
    /// rollout's device timeout) shortens it.
    #[serde(deserialize_with = "secs")]
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
    /// `mqtts://host:port` (MQTT over TLS, port 8883 by default), or `mqtt://host:port` in a lab.
    pub url: String,
    /// Brokers tried in turn after `url` when the connection fails or drops (nodes of one broker cluster), with
    /// the same login and `ca_file`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The CA (PEM) the broker's certificate is verified against; needed with `mqtts://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The phone's client certificate (PEM, CN its device id), for brokers that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
}

impl BrokerSettings {
    /// The TLS files of the link.
    pub fn tls(&self) -> bindwave_link::TlsFiles {
        bindwave_link::TlsFiles {
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

fn default_report_retry_secs() -> u64 {
    10
}

/// Five minutes: 10,000 phones make 33 small retained publishes a second.
fn default_heartbeat_secs() -> u64 {
    300
}

/// A count of at least 1 (serde's own `NonZeroU32` says what it takes).
fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    NonZeroU32::deserialize(d).map(NonZeroU32::get)
}

/// A port, 1 to 65535.
fn port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    NonZeroU16::deserialize(d).map(|p| Some(p.get()))
}

impl AgentConfig {
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

    /// The config as the agent uses it, for showing: passwords hidden unless `show_secrets`. Serialized, it
    /// has every default filled in.
    pub fn effective(&self, show_secrets: bool) -> AgentConfig {
        let mut shown = self.clone();
        if !show_secrets {
            let hide = |p: &mut Option<String>| {
                if p.is_some() {
                    *p = Some(bindwave_settings::REDACTED.into());
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
