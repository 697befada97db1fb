//! The controller's config file (`bindwave serve --config`): its keys ([`ServeFile`], whose serde derive is the
//! list the checker reads), every key with an example ([`EXAMPLE`], `bindwave.example.toml`), how a file is
//! read (syntax, unknown keys with their nearest known key, types: `bindwave_settings`, shared with the agent),
//! and what a well-formed file can still get wrong.
//!
//! Pure: what a check needs of the machine (a release key's file, whether a path is a directory) the caller
//! gives as a [`Machine`]; the controller gives its own, the fuzzer one that touches nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bindwave_settings::{Origin, Outcome, Problem, Schema, Style};
use serde::{Deserialize, Serialize};

/// The keys of the file, their environment variables and defaults, in the order `config check` shows them.
pub const KEYS: [(&str, &str, &str); 26] = [
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
    ("prometheus_url", "BINDWAVE_PROMETHEUS_URL", "(none: rollouts take no analysis gates)"),
    ("webhook_urls", "BINDWAVE_WEBHOOK_URLS", "(none: no notifications)"),
    ("webhook_secret_file", "BINDWAVE_WEBHOOK_SECRET_FILE", "<data_dir>/webhook.secret (made at first start)"),
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
    /// The Prometheus that analysis gates query (`http://prometheus:9090`).
    pub prometheus_url: Option<String>,
    /// Where rollout events are posted, as signed JSON.
    pub webhook_urls: Option<Vec<String>>,
    /// The secret webhook notifications are signed with (HMAC-SHA256).
    pub webhook_secret_file: Option<PathBuf>,
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

/// The documented example config: every key, with an example value. Messages take their examples from it.
pub const EXAMPLE: &str = include_str!("../bindwave.example.toml");

/// The file's keys, as [`ServeFile`]'s serde derive names them, with the example's values.
pub fn schema() -> Result<Schema, Vec<Problem>> {
    Schema::of::<ServeFile>(EXAMPLE).map_err(|e| vec![general(e.to_string())])
}

/// A problem of the file as a whole.
pub fn general(message: String) -> Problem {
    Problem::general(Origin::File { line: None, column: None }, message, Style::Flat)
}

/// What the checks need of the machine.
pub struct Machine<'a> {
    /// What is wrong with a release key (`ed25519:<hex>`, or the path of a file holding one), if anything.
    pub release_key: &'a dyn Fn(&str) -> Result<(), String>,
    /// Whether a path exists and is not a directory.
    pub not_a_directory: &'a dyn Fn(&Path) -> bool,
}

/// Checks the text of a config file: syntax (with line and column), unknown keys (with the nearest known
/// key), types, then meanings.
pub fn parse(text: &str, machine: &Machine) -> Result<ServeFile, Vec<Problem>> {
    parse_with(&schema()?, text, machine)
}

/// [`parse`] with the [`schema`] made once, for a caller that reads many files.
pub fn parse_with(schema: &Schema, text: &str, machine: &Machine) -> Result<ServeFile, Vec<Problem>> {
    finish(bindwave_settings::read::<ServeFile>(schema, Style::Flat, text, &[]), machine)
}

/// The checks of meaning on what read, then every problem or the values.
pub fn finish(mut outcome: Outcome<ServeFile>, machine: &Machine) -> Result<ServeFile, Vec<Problem>> {
    if let Some(file) = outcome.value.take() {
        check_meanings(&file, &mut outcome, machine);
        outcome.value = Some(file);
    }
    outcome.sort();
    match outcome.value {
        Some(file) if outcome.problems.is_empty() => Ok(file),
        _ => Err(outcome.problems),
    }
}

/// What a well-formed file can still get wrong.
fn check_meanings(file: &ServeFile, out: &mut Outcome<ServeFile>, machine: &Machine) {
    if let Some(url) = &file.broker {
        if let Err(e) = bindwave_link::BrokerUrl::parse(url) {
            out.problem(&["broker"], e.to_string());
        }
    }
    for url in file.webhook_urls.iter().flatten() {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            out.problem(&["webhook_urls"], format!("{url:?} is not an http:// or https:// URL of a webhook receiver"));
        }
    }
    if let Some(url) = &file.prometheus_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            out.problem(&["prometheus_url"], format!("{url:?} is not an http:// or https:// URL of a Prometheus"));
        }
    }
    if let Some(url) = &file.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            out.problem(&["public_url"], format!("{url:?} is not an http:// or https:// URL that phones can reach"));
        }
    }
    if let Some(level) = &file.log_level {
        if let Err(e) = bindwave_settings::log_filter(level) {
            out.problem(&["log_level"], e.to_string());
        }
    }
    for entry in file.release_keys.iter().flatten() {
        if let Err(e) = (machine.release_key)(entry) {
            out.problem(&["release_keys"], e);
        }
    }
    if file.tls_cert.is_some() != file.tls_key.is_some() {
        let (given, missing) = if file.tls_cert.is_some() { ("tls_cert", "tls_key") } else { ("tls_key", "tls_cert") };
        out.problem(
            &[missing],
            format!(
                "{given} is set, so {missing} must be too (the certificate and its key; neither for a development CA)"
            ),
        );
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
        if (machine.not_a_directory)(dir) {
            out.problem(&["data_dir"], format!("{} exists and is not a directory", dir.display()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine where every key is good and no path is in the way.
    const NOTHING: Machine<'static> = Machine { release_key: &|_| Ok(()), not_a_directory: &|_| false };

    fn messages(text: &str) -> Vec<String> {
        parse(text, &NOTHING).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_file_reads() {
        let text = "data_dir = \"/var/lib/bindwave\"\nhttp_listen = \"0.0.0.0:8080\"\nlog_format = \"json\"\n";
        let f = parse(text, &NOTHING).unwrap();
        assert_eq!(f.http_listen, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(f.log_format, Some(LogFormat::Json));
    }

    #[test]
    fn every_problem_is_named_with_a_hint() {
        let m = messages("htp_listen = \"0.0.0.0:8080\"\nmqtt_listen = 1883\nbroker = \"http://x\"\n");
        assert!(m.iter().any(|m| m.starts_with("htp_listen: unknown key; did you mean `http_listen`?")), "{m:?}");
        assert!(m.iter().any(|m| m.starts_with("mqtt_listen:") && (m.contains("host") || m.contains("port"))), "{m:?}");
        let m = messages("broker = \"http://x\"\npublic_url = \"bindwave.example\"\n");
        assert!(m.iter().any(|m| m.starts_with("broker:")), "{m:?}");
        assert!(m.iter().any(|m| m.starts_with("public_url:") && m.contains("http://")), "{m:?}");
        let m = messages("data_dir = \"x\"\nhttp_listen = \n");
        assert!(m[0].contains("line 2"), "{m:?}");
    }

    /// One mistake, one problem: a certificate without its key is named once.
    #[test]
    fn a_certificate_without_its_key_is_one_problem() {
        let m = messages("tls_cert = \"/etc/bindwave/server.pem\"\nhttp_max_connections = 0\n");
        assert_eq!(m.iter().filter(|m| m.starts_with("tls_key:")).count(), 1, "{m:?}");
        assert!(m.iter().any(|m| m.starts_with("tls_key:") && m.contains("tls_cert is set")), "{m:?}");
        assert!(m.iter().any(|m| m.starts_with("http_max_connections:")), "{m:?}");
    }

    /// What the machine says goes into the problems, with the key.
    #[test]
    fn the_machines_answers_are_problems_of_their_keys() {
        let machine = Machine { release_key: &|k| Err(format!("{k} is no key")), not_a_directory: &|_| true };
        let m: Vec<String> = parse("release_keys = [\"x\"]\ndata_dir = \"/etc/passwd\"\n", &machine)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(m.iter().any(|m| m.starts_with("release_keys: x is no key")), "{m:?}");
        assert!(m.iter().any(|m| m.starts_with("data_dir:") && m.contains("not a directory")), "{m:?}");
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
        parse(EXAMPLE, &NOTHING).unwrap();
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
        assert_eq!(parse("log_format = \"JSON\"\n", &NOTHING).unwrap().log_format, Some(LogFormat::Json));
    }

    /// The fuzzer's find: a log filter whose directive starts with blanks and holds a non-ASCII character made
    /// the filter parser panic. It is a problem of its key now.
    #[test]
    fn a_log_filter_that_is_not_ascii_is_a_problem_not_a_panic() {
        let m = messages("log_level = \",,\t\tbindwave\u{ffff}=debug\"\n");
        assert!(m.iter().any(|m| m.starts_with("log_level:") && m.contains("not a log level")), "{m:?}");
    }

    /// The fuzzer's second find: a field filter whose value compiled to an automaton of more than 64 MiB.
    #[test]
    fn a_log_filter_with_span_or_field_filters_is_a_problem() {
        let m = messages("log_level = \"bindwave[{f=a|b}]=debug\"\n");
        assert!(m.iter().any(|m| m.starts_with("log_level:") && m.contains("span or field filter")), "{m:?}");
    }

    #[test]
    fn typos_find_their_key() {
        assert_eq!(bindwave_settings::nearest("dta_dir", KEYS.iter().map(|k| k.0)), Some("data_dir"));
        assert_eq!(bindwave_settings::nearest("colour", KEYS.iter().map(|k| k.0)), None);
    }
}
