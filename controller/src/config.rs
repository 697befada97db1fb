//! The controller's settings: a TOML file (`--config`, `BINDWAVE_CONFIG`), each key overridable by its
//! environment variable (`BINDWAVE_<KEY>`) and its flag (`--<key>`). Precedence: flag, then environment,
//! then file, then default. `bindwave config check` explains a bad file and shows where each value came from.
//! The file itself (its keys, their example in `controller-config/bindwave.example.toml`, and its checks) is
//! the `bindwave_controller_config` crate; this module layers it with the environment and the flags, and gives
//! the checks the machine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bindwave_controller_config::Machine;
use bindwave_settings::{Origin, Override, Style};
use serde::Serialize;

use crate::ControllerError;

pub use bindwave_controller_config::{LogFormat, ServeFile, EXAMPLE, KEYS};

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

/// The settings `bindwave serve` runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServeSettings {
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub public_url: Option<String>,
    pub mqtt_listen: SocketAddr,
    pub broker: Option<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub release_keys: Vec<String>,
    pub allow_unsigned_images: bool,
    /// How long a signed command without a time limit of its own stays valid.
    pub command_ttl: std::time::Duration,
    /// The server certificate and key (PEM) of the embedded broker's TLS listener and of HTTPS; without them a
    /// development CA and certificate are made in `data_dir/tls/`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// With it, MQTT clients need a certificate this CA signed, and its CN is their identity.
    pub mqtt_client_ca: Option<PathBuf>,
    /// Lab mode: plain MQTT, anonymous clients, no topic rules; plain HTTP without tokens. Logged loudly at
    /// start.
    pub insecure_lab: bool,
    /// The controller's own MQTT connection: the CA it verifies the broker with, its client certificate and
    /// key (mutual TLS), its username and password (an external broker).
    pub broker_ca: Option<PathBuf>,
    pub broker_client_cert: Option<PathBuf>,
    pub broker_client_key: Option<PathBuf>,
    pub broker_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hidden")]
    pub broker_password: Option<String>,
    pub http_max_connections: usize,
    pub max_upload_size: u64,
    pub http_header_timeout_secs: u64,
    pub http_body_timeout_secs: u64,
    pub prometheus_url: Option<String>,
    pub webhook_urls: Vec<String>,
    pub webhook_secret_file: Option<PathBuf>,
    /// Where each key's value came from.
    #[serde(skip)]
    pub sources: BTreeMap<&'static str, Source>,
}

/// A secret is shown as set, never as itself.
fn hidden<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if value.is_some() { "(set)" } else { "" })
}

/// A problem with the settings, and where it comes from (the file's line and column, a variable or a flag).
pub use bindwave_settings::Problem;

/// The known key nearest to a misspelled one, if near enough to be a typo (the agent's rule too).
pub use bindwave_settings::nearest;

/// The file's keys, as [`ServeFile`]'s serde derive names them, with the example's values.
pub use bindwave_controller_config::{general, schema};

/// The machine as the checks see it: release keys read from their files, paths looked at.
const MACHINE: Machine<'static> = Machine {
    release_key: &|entry| crate::images::public_key_arg(entry).map(drop).map_err(|e| crate::error::chain(&e)),
    not_a_directory: &|dir| dir.exists() && !dir.is_dir(),
};

/// Reads and checks a config file: every problem found, or the file's values.
pub fn load_file(path: &Path) -> Result<ServeFile, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![general(format!("cannot read {}: {e} (check the path given to --config)", path.display()))]
    })?;
    parse_file(&text)
}

/// Checks the text of a config file: syntax (with line and column), unknown keys (with the nearest known
/// key), types, then meanings.
pub fn parse_file(text: &str) -> Result<ServeFile, Vec<Problem>> {
    bindwave_controller_config::parse(text, &MACHINE)
}

/// The overrides of the environment (`BINDWAVE_<KEY>`, known keys only), then of the flags.
fn overrides(flags: &Flags) -> Result<Vec<Override>, Vec<Problem>> {
    let mut all = Vec::new();
    for (key, var, _) in KEYS {
        if let Some(value) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            all.push(Override::env_var(var, &[key], &value));
        }
    }
    let given = toml::Table::try_from(flags).map_err(|e| vec![general(format!("the flags do not read: {e}"))])?;
    for (key, value) in &given {
        let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
        let mut o = Override::flag(&format!("--{}", key.replace('_', "-")), &[key.as_str()], &text);
        // A list (`--release-key`, repeated), a number or a switch keeps its type; text is taken as written.
        o.value = value.clone();
        all.push(o);
    }
    Ok(all)
}

/// Flags given on the command line (each `None` if absent): the same keys as the file.
pub type Flags = ServeFile;

impl ServeSettings {
    /// Flags over environment over file over defaults.
    pub fn resolve(flags: &Flags, file: &ServeFile) -> Result<ServeSettings, Vec<Problem>> {
        let schema = schema()?;
        let table = toml::Table::try_from(file).map_err(|e| vec![general(format!("the file does not read: {e}"))])?;
        let overrides = overrides(flags)?;
        let outcome = bindwave_settings::read_table::<ServeFile>(&schema, Style::Flat, table.clone(), &overrides);
        let applied = outcome.overrides.clone();
        // The environment and flags must mean something too.
        let effective = bindwave_controller_config::finish(outcome, &MACHINE)?;
        let mut sources = BTreeMap::new();
        for (key, _, _) in KEYS {
            let source = match applied.iter().rev().find(|o| o.key == key) {
                Some(o) if matches!(o.origin, Origin::Flag { .. }) => Source::Flag,
                Some(_) => Source::Env,
                None if table.contains_key(key) => Source::File,
                None => Source::Default,
            };
            sources.insert(key, source);
        }
        let ServeFile {
            data_dir,
            http_listen,
            public_url,
            mqtt_listen,
            broker,
            log_level,
            log_format,
            release_keys,
            allow_unsigned_images,
            command_ttl,
            tls_cert,
            tls_key,
            mqtt_client_ca,
            insecure_lab,
            broker_ca,
            broker_client_cert,
            broker_client_key,
            broker_username,
            broker_password,
            http_max_connections,
            max_upload_size,
            http_header_timeout_secs,
            http_body_timeout_secs,
            prometheus_url,
            webhook_urls,
            webhook_secret_file,
        } = effective;
        let insecure_lab = insecure_lab.unwrap_or(false);
        // MQTT over TLS listens on 8883, plain MQTT (lab mode) on 1883, as IANA assigns them.
        let mqtt_port = if insecure_lab { 1883 } else { 8883 };
        Ok(ServeSettings {
            data_dir: data_dir.unwrap_or_else(|| PathBuf::from("bindwave-data")),
            http_listen: http_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            public_url,
            mqtt_listen: mqtt_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], mqtt_port))),
            broker,
            log_level: log_level.unwrap_or_else(|| "info".into()),
            log_format: log_format.unwrap_or_default(),
            release_keys: release_keys.unwrap_or_default(),
            allow_unsigned_images: allow_unsigned_images.unwrap_or(false),
            command_ttl: command_ttl.map_or(crate::service::DEFAULT_COMMAND_TTL, std::time::Duration::from_secs),
            tls_cert,
            tls_key,
            mqtt_client_ca,
            insecure_lab,
            broker_ca,
            broker_client_cert,
            broker_client_key,
            broker_username,
            broker_password,
            http_max_connections: http_max_connections.unwrap_or(crate::http_server::DEFAULT_MAX_CONNECTIONS),
            max_upload_size: max_upload_size.unwrap_or(crate::service::DEFAULT_MAX_UPLOAD_SIZE),
            http_header_timeout_secs: http_header_timeout_secs.unwrap_or(crate::http_server::HEADER_TIMEOUT.as_secs()),
            http_body_timeout_secs: http_body_timeout_secs.unwrap_or(crate::http_server::BODY_TIMEOUT.as_secs()),
            prometheus_url,
            webhook_urls: webhook_urls.unwrap_or_default(),
            webhook_secret_file,
            sources,
        })
    }

    /// The release keys read (their files too) and the lab setting: which images the service admits.
    pub fn image_policy(&self) -> Result<crate::images::ImagePolicy, ControllerError> {
        let keys: Result<Vec<_>, _> = self.release_keys.iter().map(|k| crate::images::public_key_arg(k)).collect();
        Ok(crate::images::ImagePolicy {
            release_keys: bindwave_proto::TrustedKeys::new(keys?),
            allow_unsigned: self.allow_unsigned_images,
        })
    }

    /// The settings from an optional file and the flags.
    pub fn load(config: Option<&Path>, flags: &Flags) -> Result<ServeSettings, ControllerError> {
        let file = match config {
            Some(path) => load_file(path).map_err(|p| invalid(path, &p))?,
            None => ServeFile::default(),
        };
        ServeSettings::resolve(flags, &file)
            .map_err(|p| invalid(config.unwrap_or(Path::new("(flags and environment)")), &p))
    }
}

fn invalid(path: &Path, problems: &[Problem]) -> ControllerError {
    ControllerError::Config {
        path: path.to_path_buf(),
        problems: problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        parse_file(text).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn flags_win_over_environment_over_file() {
        let file = ServeFile { http_listen: Some("127.0.0.1:1000".parse().unwrap()), ..Default::default() };
        let s = ServeSettings::resolve(&Flags::default(), &file).unwrap();
        assert_eq!((s.http_listen.port(), s.sources["http_listen"]), (1000, Source::File));
        assert_eq!(s.sources["data_dir"], Source::Default);
        let flags = Flags { http_listen: Some("127.0.0.1:2000".parse().unwrap()), ..Default::default() };
        let s = ServeSettings::resolve(&flags, &file).unwrap();
        assert_eq!((s.http_listen.port(), s.sources["http_listen"]), (2000, Source::Flag));
    }

    #[test]
    fn numbers_and_switches_from_flags_and_environment_keep_their_type() {
        let flags = Flags { http_max_connections: Some(50), insecure_lab: Some(true), ..Default::default() };
        let s = ServeSettings::resolve(&flags, &ServeFile::default()).unwrap();
        assert_eq!((s.http_max_connections, s.insecure_lab), (50, true));
        assert_eq!(s.sources["http_max_connections"], Source::Flag);
        assert_eq!((s.max_upload_size, s.http_header_timeout_secs), (2 << 30, 10));
    }

    #[test]
    fn release_keys_read_from_lines_and_files_and_a_bad_one_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::keys::SigningKey::create(&dir.path().join("release.key")).unwrap();
        let file = dir.path().join("release.key.pub");
        let line = "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
        let text = format!("release_keys = [{line:?}, {:?}]\n", file.display().to_string());
        let s = ServeSettings::resolve(&Flags::default(), &parse_file(&text).unwrap()).unwrap();
        let policy = s.image_policy().unwrap();
        assert_eq!(policy.release_keys.keys().len(), 2);
        assert!(policy.release_keys.ids().any(|id| id == key.key_id()));
        assert!(!policy.allow_unsigned);
        let m = messages("release_keys = [\"ed25519:zz\", \"/no/such/release.key.pub\"]\n");
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("release_keys:") && m[0].contains("64 hex digits"), "{m:?}");
        assert!(m[1].contains("/no/such/release.key.pub"), "{m:?}");
        // The lab setting, from the file or its flag; a list flag keeps its type.
        let lab = parse_file("allow_unsigned_images = true\n").unwrap();
        assert!(ServeSettings::resolve(&Flags::default(), &lab).unwrap().allow_unsigned_images);
        let flags = Flags {
            release_keys: Some(vec![line.to_string()]),
            allow_unsigned_images: Some(true),
            ..Default::default()
        };
        let s = ServeSettings::resolve(&flags, &ServeFile::default()).unwrap();
        assert_eq!((s.release_keys.len(), s.allow_unsigned_images), (1, true));
        assert_eq!(s.sources["release_keys"], Source::Flag);
    }
}
