//! The controller's settings: a TOML file (`--config`, `BINDWAVE_CONFIG`), each key overridable by its
//! environment variable (`BINDWAVE_<KEY>`) and its flag (`--<key>`). Precedence: flag, then environment,
//! then file, then default. `bindwave config check` explains a bad file and shows where each value came from.
//!
//! ```toml
//! data_dir = "/var/lib/bindwave"
//! http_listen = "0.0.0.0:8080"
//! public_url = "http://bindwave.example:8080"
//! mqtt_listen = "0.0.0.0:1883"      # the embedded broker
//! # broker = "mqtt://mosquitto.example:1883"   # or an external one
//! log_level = "info"
//! log_format = "json"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ControllerError;

/// The keys of the file, their environment variables and defaults, in the order `config check` shows them.
pub const KEYS: [(&str, &str, &str); 7] = [
    ("data_dir", "BINDWAVE_DATA_DIR", "bindwave-data"),
    ("http_listen", "BINDWAVE_HTTP_LISTEN", "127.0.0.1:8080"),
    ("public_url", "BINDWAVE_PUBLIC_URL", "http://<http_listen>"),
    ("mqtt_listen", "BINDWAVE_MQTT_LISTEN", "127.0.0.1:1883"),
    ("broker", "BINDWAVE_BROKER", "(the embedded broker)"),
    ("log_level", "BINDWAVE_LOG_LEVEL", "info"),
    ("log_format", "BINDWAVE_LOG_FORMAT", "text"),
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
}

/// How logs are written: lines for people, or JSON objects for log shippers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
    /// Where each key's value came from.
    #[serde(skip)]
    pub sources: BTreeMap<&'static str, Source>,
}

/// A problem in a config file, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub key: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{k}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Reads and checks a config file: every problem found, or the file's values.
pub fn load_file(path: &Path) -> Result<ServeFile, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem {
            key: None,
            message: format!("cannot read {}: {e} (check the path given to --config)", path.display()),
        }]
    })?;
    parse_file(&text)
}

/// Checks the text of a config file: syntax (with line and column), unknown keys (with the nearest known
/// key), types, then meanings.
pub fn parse_file(text: &str) -> Result<ServeFile, Vec<Problem>> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| vec![Problem { key: None, message: format!("not valid TOML: {}", e.to_string().trim()) }])?;
    let mut problems = Vec::new();
    for key in table.keys() {
        if !KEYS.iter().any(|(k, _, _)| k == key) {
            let hint = match nearest(key, KEYS.iter().map(|(k, _, _)| *k)) {
                Some(k) => format!("did you mean `{k}`?"),
                None => format!("known keys: {}", KEYS.iter().map(|(k, _, _)| *k).collect::<Vec<_>>().join(", ")),
            };
            problems.push(Problem { key: Some(key.clone()), message: format!("unknown key; {hint}") });
        }
    }
    // Each known key on its own, so one bad value does not hide the others.
    let mut readable = toml::Table::new();
    for (key, value) in &table {
        if !KEYS.iter().any(|(k, _, _)| k == key) {
            continue;
        }
        let one: toml::Table = [(key.clone(), value.clone())].into_iter().collect();
        match toml::Value::Table(one).try_into::<ServeFile>() {
            Ok(_) => drop(readable.insert(key.clone(), value.clone())),
            Err(e) => problems.push(Problem { key: Some(key.clone()), message: type_hint(key, e.message()) }),
        }
    }
    if !problems.is_empty() {
        if let Ok(partial) = toml::Value::Table(readable).try_into::<ServeFile>() {
            problems.extend(check_meanings(&partial));
        }
        return Err(problems);
    }
    let file: ServeFile =
        toml::from_str(text).map_err(|e| vec![Problem { key: None, message: e.to_string().trim().to_string() }])?;
    let problems = check_meanings(&file);
    if problems.is_empty() {
        Ok(file)
    } else {
        Err(problems)
    }
}

fn type_hint(key: &str, detail: &str) -> String {
    let want = match key {
        "http_listen" | "mqtt_listen" => "an address with a port, e.g. \"0.0.0.0:8080\"",
        "log_format" => "\"text\" or \"json\"",
        "data_dir" => "a directory path",
        _ => "a string",
    };
    format!("{detail}; expected {want}")
}

/// What a well-formed file can still get wrong.
fn check_meanings(file: &ServeFile) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| problems.push(Problem { key: Some(key.into()), message });
    if let Some(url) = &file.broker {
        if let Err(e) = bindwave_link::BrokerUrl::parse(url) {
            problem("broker", e.to_string());
        }
    }
    if let Some(url) = &file.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            problem("public_url", format!("{url:?} is not an http:// or https:// URL that phones can reach"));
        }
    }
    if let Some(level) = &file.log_level {
        if tracing_subscriber::EnvFilter::try_new(level).is_err() {
            problem(
                "log_level",
                format!("{level:?} is not a log level or filter (try info, debug, or bindwave=debug)"),
            );
        }
    }
    if let Some(dir) = &file.data_dir {
        if dir.exists() && !dir.is_dir() {
            problem("data_dir", format!("{} exists and is not a directory", dir.display()));
        }
    }
    problems
}

/// The value of a key from the environment, if set.
fn env(key: &str) -> Option<String> {
    let var = KEYS.iter().find(|(k, _, _)| *k == key).map(|(_, v, _)| *v)?;
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// Flags given on the command line (each `None` if absent): the same keys as the file.
pub type Flags = ServeFile;

impl ServeSettings {
    /// Flags over environment over file over defaults.
    pub fn resolve(flags: &Flags, file: &ServeFile) -> Result<ServeSettings, Vec<Problem>> {
        let mut sources = BTreeMap::new();
        let mut problems = Vec::new();
        macro_rules! pick {
            ($key:literal, $field:ident, $parse:expr) => {{
                let from_env = match env($key).map($parse) {
                    Some(Ok(v)) => Some(v),
                    Some(Err(e)) => {
                        let var = KEYS.iter().find(|(k, _, _)| *k == $key).map_or("", |(_, v, _)| *v);
                        problems.push(Problem { key: Some($key.into()), message: format!("{var}: {e}") });
                        None
                    }
                    None => None,
                };
                if let Some(v) = flags.$field.clone() {
                    sources.insert($key, Source::Flag);
                    Some(v)
                } else if let Some(v) = from_env {
                    sources.insert($key, Source::Env);
                    Some(v)
                } else if let Some(v) = file.$field.clone() {
                    sources.insert($key, Source::File);
                    Some(v)
                } else {
                    sources.insert($key, Source::Default);
                    None
                }
            }};
        }
        let text = |s: String| Ok::<_, String>(s);
        let addr = |s: String| s.parse::<SocketAddr>().map_err(|e| format!("{s:?}: {e} (expected host:port)"));
        let data_dir = pick!("data_dir", data_dir, |s: String| Ok::<_, String>(PathBuf::from(s)));
        let http_listen = pick!("http_listen", http_listen, addr);
        let public_url = pick!("public_url", public_url, text);
        let mqtt_listen = pick!("mqtt_listen", mqtt_listen, addr);
        let broker = pick!("broker", broker, text);
        let log_level = pick!("log_level", log_level, text);
        let log_format = pick!("log_format", log_format, |s: String| match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("{s:?} is not a log format (text or json)")),
        });
        // The environment and flags must mean something too.
        let effective = ServeFile {
            data_dir: data_dir.clone(),
            http_listen,
            public_url: public_url.clone(),
            mqtt_listen,
            broker: broker.clone(),
            log_level: log_level.clone(),
            log_format,
        };
        problems.extend(check_meanings(&effective));
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ServeSettings {
            data_dir: data_dir.unwrap_or_else(|| PathBuf::from("bindwave-data")),
            http_listen: http_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            public_url,
            mqtt_listen: mqtt_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1883))),
            broker,
            log_level: log_level.unwrap_or_else(|| "info".into()),
            log_format: log_format.unwrap_or_default(),
            sources,
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

/// The known key nearest to a misspelled one, if near enough to be a typo (the agent's rule).
pub use bindwave_agent::config::nearest;

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
    fn typos_find_their_key() {
        assert_eq!(nearest("dta_dir", KEYS.iter().map(|k| k.0)), Some("data_dir"));
        assert_eq!(nearest("colour", KEYS.iter().map(|k| k.0)), None);
    }
}
