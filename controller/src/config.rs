//! The controller's settings: a TOML file (`--config`, `BINDWAVE_CONFIG`), each key overridable by its
//! environment variable (`BINDWAVE_<KEY>`) and its flag (`--<key>`). Precedence: flag, then environment,
//! then file, then default. `bindwave config check` explains a bad file and shows where each value came from.
//! Every key, with an example, is in `controller/bindwave.example.toml`; [`ServeFile`]'s serde derive is the
//! list of keys the checker (the `bindwave_settings` crate, shared with the agent) reads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bindwave_settings::{Origin, Outcome, Override, Schema, Style};
use serde::{Deserialize, Serialize};

use crate::ControllerError;

/// The keys of the file, their environment variables and defaults, in the order `config check` shows them.
pub const KEYS: [(&str, &str, &str); 23] = [
    ("data_dir", "BINDWAVE_DATA_DIR", "bindwave-data"),
    ("http_listen", "BINDWAVE_HTTP_LISTEN", "127.0.0.1:8080"),
    ("public_url", "BINDWAVE_PUBLIC_URL", "https://<http_listen> (http:// in lab mode)"),
    ("mqtt_listen", "BINDWAVE_MQTT_LISTEN", "127.0.0.1:8883"),
    ("broker", "BINDWAVE_BROKER", "(the embedded broker)"),
    ("log_level", "BINDWAVE_LOG_LEVEL", "info"),
    ("log_format", "BINDWAVE_LOG_FORMAT", "text"),
    ("release_keys", "BINDWAVE_RELEASE_KEYS", "(none: no image is added)"),
    ("allow_unsigned_images", "BINDWAVE_ALLOW_UNSIGNED_IMAGES", "false"),
    ("command_ttl", "BINDWAVE_COMMAND_TTL", "24h"),
    ("tls_cert", "BINDWAVE_TLS_CERT", "<data_dir>/tls/server.pem (made at first start)"),
    ("tls_key", "BINDWAVE_TLS_KEY", "<data_dir>/tls/server.key (made at first start)"),
    ("mqtt_client_ca", "BINDWAVE_MQTT_CLIENT_CA", "(none: clients log in with passwords)"),
    ("insecure_lab", "BINDWAVE_INSECURE_LAB", "false"),
    ("broker_ca", "BINDWAVE_BROKER_CA", "<data_dir>/tls/ca.pem with the embedded broker"),
    ("broker_client_cert", "BINDWAVE_BROKER_CLIENT_CERT", "(none)"),
    ("broker_client_key", "BINDWAVE_BROKER_CLIENT_KEY", "(none)"),
    ("broker_username", "BINDWAVE_BROKER_USERNAME", "bindwave:controller"),
    ("broker_password", "BINDWAVE_BROKER_PASSWORD", "(derived from <data_dir>/broker.secret)"),
    ("http_max_connections", "BINDWAVE_HTTP_MAX_CONNECTIONS", "1024"),
    ("max_upload_size", "BINDWAVE_MAX_UPLOAD_SIZE", "2147483648"),
    ("http_header_timeout_secs", "BINDWAVE_HTTP_HEADER_TIMEOUT_SECS", "10"),
    ("http_body_timeout_secs", "BINDWAVE_HTTP_BODY_TIMEOUT_SECS", "30"),
];

/// The file, as written. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub data_dir: Option<PathBuf>,
    pub http_listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub mqtt_listen: Option<SocketAddr>,
    pub broker: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    /// The release keys images must be signed with: each the path of a public key file
    /// (`release.key.pub`, as `bindwave image keygen` writes it) or the key itself, `ed25519:<hex>`.
    pub release_keys: Option<Vec<String>>,
    /// A lab setting: add and roll out unsigned images too (a signed one must still verify).
    pub allow_unsigned_images: Option<bool>,
    /// Seconds (or `"24h"`) a signed command without a time limit of its own stays valid on the phones.
    #[serde(
        default,
        deserialize_with = "bindwave_settings::duration::opt_secs",
        skip_serializing_if = "Option::is_none"
    )]
    pub command_ttl: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub mqtt_client_ca: Option<PathBuf>,
    pub insecure_lab: Option<bool>,
    pub broker_ca: Option<PathBuf>,
    pub broker_client_cert: Option<PathBuf>,
    pub broker_client_key: Option<PathBuf>,
    pub broker_username: Option<String>,
    pub broker_password: Option<String>,
    /// Open HTTP connections at most (the open-files limit may cap it lower).
    pub http_max_connections: Option<usize>,
    /// The largest image upload, in bytes.
    pub max_upload_size: Option<u64>,
    /// Seconds a client has for its TLS handshake, and for each request's headers.
    pub http_header_timeout_secs: Option<u64>,
    /// Seconds a request body may send nothing before the request ends.
    pub http_body_timeout_secs: Option<u64>,
}

/// How logs are written: lines for people, or JSON objects for log shippers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `text` or `json`, in any case (`BINDWAVE_LOG_FORMAT=JSON`).
impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(serde::de::Error::unknown_variant(&name, &["text", "json"])),
        }
    }
}

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

/// The documented example config: every key, with an example value. Messages take their examples from it.
pub const EXAMPLE: &str = include_str!("../bindwave.example.toml");

/// The file's keys, as [`ServeFile`]'s serde derive names them, with the example's values.
pub fn schema() -> Result<Schema, Vec<Problem>> {
    Schema::of::<ServeFile>(EXAMPLE).map_err(|e| vec![general(e.to_string())])
}

fn general(message: String) -> Problem {
    Problem::general(Origin::File { line: None, column: None }, message, Style::Flat)
}

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
    let schema = schema()?;
    finish(bindwave_settings::read::<ServeFile>(&schema, Style::Flat, text, &[]))
}

/// The checks of meaning on what read, then every problem or the values.
fn finish(mut outcome: Outcome<ServeFile>) -> Result<ServeFile, Vec<Problem>> {
    if let Some(file) = outcome.value.take() {
        check_meanings(&file, &mut outcome);
        outcome.value = Some(file);
    }
    outcome.sort();
    match outcome.value {
        Some(file) if outcome.problems.is_empty() => Ok(file),
        _ => Err(outcome.problems),
    }
}

/// What a well-formed file can still get wrong.
fn check_meanings(file: &ServeFile, out: &mut Outcome<ServeFile>) {
    if let Some(url) = &file.broker {
        if let Err(e) = bindwave_link::BrokerUrl::parse(url) {
            out.problem(&["broker"], e.to_string());
        }
    }
    if let Some(url) = &file.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            out.problem(&["public_url"], format!("{url:?} is not an http:// or https:// URL that phones can reach"));
        }
    }
    if let Some(level) = &file.log_level {
        if tracing_subscriber::EnvFilter::try_new(level).is_err() {
            out.problem(
                &["log_level"],
                format!("{level:?} is not a log level or filter (try info, debug, or bindwave=debug)"),
            );
        }
    }
    for entry in file.release_keys.iter().flatten() {
        if let Err(e) = crate::images::public_key_arg(entry) {
            out.problem(&["release_keys"], crate::error::chain(&e));
        }
    }
    if file.tls_cert.is_some() != file.tls_key.is_some() {
        let (given, missing) = if file.tls_cert.is_some() { ("tls_cert", "tls_key") } else { ("tls_key", "tls_cert") };
        out.problem(&[missing], format!("{given} is set, so {missing} must be too (the certificate and its key)"));
    }
    if file.http_max_connections == Some(0) {
        out.problem(&["http_max_connections"], "must be at least 1".to_string());
    }
    for (key, value) in [
        ("http_header_timeout_secs", file.http_header_timeout_secs),
        ("http_body_timeout_secs", file.http_body_timeout_secs),
    ] {
        if value == Some(0) {
            out.problem(&[key], "must be at least 1 (seconds)".to_string());
        }
    }
    if file.max_upload_size == Some(0) {
        out.problem(&["max_upload_size"], "must be at least 1 (bytes)".to_string());
    }
    if let Some(dir) = &file.data_dir {
        if dir.exists() && !dir.is_dir() {
            out.problem(&["data_dir"], format!("{} exists and is not a directory", dir.display()));
        }
    }
    if file.tls_cert.is_some() != file.tls_key.is_some() {
        let (set, unset) = if file.tls_cert.is_some() { ("tls_cert", "tls_key") } else { ("tls_key", "tls_cert") };
        out.problem(&[unset], format!("{set} is set without {unset}: set both, or neither for a development CA"));
    }
    if file.broker_client_cert.is_some() != file.broker_client_key.is_some() {
        out.problem(
            &[if file.broker_client_cert.is_some() { "broker_client_key" } else { "broker_client_cert" }],
            "broker_client_cert and broker_client_key go together: set both or neither".to_string(),
        );
    }
    if file.broker_password.is_some() && file.broker_username.is_none() && file.broker.is_some() {
        out.problem(&["broker_username"], "broker_password is set without broker_username".to_string());
    }
    if file.insecure_lab == Some(true) {
        for (key, set) in [("tls_cert", file.tls_cert.is_some()), ("mqtt_client_ca", file.mqtt_client_ca.is_some())] {
            if set {
                out.problem(&[key], format!("{key} is set with insecure_lab = true, which turns TLS off; choose one"));
            }
        }
    }
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
        let effective = finish(outcome)?;
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
    fn a_good_file_reads() {
        let f = parse_file("data_dir = \"/var/lib/bindwave\"\nhttp_listen = \"0.0.0.0:8080\"\nlog_format = \"json\"\n")
            .unwrap();
        assert_eq!(f.http_listen, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(f.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn every_problem_is_named_with_a_hint() {
        let m = messages("htp_listen = \"0.0.0.0:8080\"\nmqtt_listen = 1883\nbroker = \"http://x\"\n");
        assert!(m.iter().any(|m| m.starts_with("htp_listen: unknown key; did you mean `http_listen`?")), "{m:?}");
        assert!(m.iter().any(|m| m.starts_with("mqtt_listen:") && m.contains("host") || m.contains("port")), "{m:?}");
        let m = messages("broker = \"http://x\"\npublic_url = \"bindwave.example\"\n");
        assert!(m.iter().any(|m| m.starts_with("broker:")), "{m:?}");
        assert!(m.iter().any(|m| m.starts_with("public_url:") && m.contains("http://")), "{m:?}");
        let m = messages("data_dir = \"x\"\nhttp_listen = \n");
        assert!(m[0].contains("line 2"), "{m:?}");
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
        let m = messages("tls_cert = \"/etc/bindwave/server.pem\"\nhttp_max_connections = 0\n");
        assert!(m.iter().any(|m| m.starts_with("tls_key:") && m.contains("tls_cert is set")), "{m:?}");
        assert!(m.iter().any(|m| m.starts_with("http_max_connections:")), "{m:?}");
    }

    #[test]
    fn the_example_has_every_key_and_keys_lists_them_in_order() {
        let schema = schema().unwrap();
        assert!(schema.unexampled().is_empty(), "{:?}", schema.unexampled());
        let fields = schema.fields(&[]).unwrap();
        assert_eq!(fields.len(), KEYS.len());
        for (key, var, _) in KEYS {
            assert!(fields.contains(&key), "{key} is not a ServeFile key");
            assert_eq!(var, format!("BINDWAVE_{}", key.to_ascii_uppercase()));
        }
        parse_file(EXAMPLE).unwrap();
    }

    #[test]
    fn the_messages_are_the_agents_words_with_the_key_first() {
        let m = messages("log_format = \"xml\"\nhttp_listen = 8080\n");
        assert_eq!(
            m,
            [
                "log_format: must be one of \"text\", \"json\", e.g. \"json\"; found the string \"xml\" (line 1, column 1)",
                "http_listen: must be an address with a port (host:port), e.g. \"0.0.0.0:8080\"; found the number 8080 \
                 (line 2, column 1)",
            ]
        );
        assert_eq!(parse_file("log_format = \"JSON\"\n").unwrap().log_format, Some(LogFormat::Json));
    }

    #[test]
    fn typos_find_their_key() {
        assert_eq!(nearest("dta_dir", KEYS.iter().map(|k| k.0)), Some("data_dir"));
        assert_eq!(nearest("colour", KEYS.iter().map(|k| k.0)), None);
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
