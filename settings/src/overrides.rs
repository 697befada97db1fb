//! Values set over the file: from environment variables and flags, each remembering where it came from.

use serde::Serialize;

use crate::schema::Schema;
use crate::words::{dotted, found};
use crate::Origin;

/// What a secret is shown as.
pub const REDACTED: &str = "********";

/// Keys whose values are never shown unless asked: `broker.password`, `access.password`.
pub fn is_secret(key: &str) -> bool {
    key == "password"
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
    pub(crate) raw: String,
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
        Ok(Override::new(path, raw, Origin::Flag { flag: format!("--set {key}={shown}") }))
    }

    /// A dedicated flag (`--broker URL`) for a key: the value is taken as a string, as written.
    pub fn flag(flag: &str, key: &[&str], value: &str) -> Override {
        let path: Vec<String> = key.iter().map(|k| k.to_string()).collect();
        let mut o = Override::new(path, value, Origin::Flag { flag: flag.to_string() });
        o.value = toml::Value::String(value.to_string());
        o
    }

    /// One environment variable for one key (`BINDWAVE_HTTP_LISTEN` for `http_listen`): the value is read like
    /// a `--set` value.
    pub fn env_var(var: &str, key: &[&str], raw: &str) -> Override {
        let path: Vec<String> = key.iter().map(|k| k.to_string()).collect();
        Override::new(path, raw, Origin::Env { var: var.to_string() })
    }

    /// The overrides in an environment: every `<PREFIX><SECTION>__<KEY>` variable (any case; parts separated by
    /// two underscores), sorted by name. Values are read like `--set` values.
    pub fn from_env_prefixed(
        prefix: &str,
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Vec<Override> {
        let mut found: Vec<Override> = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                if !name.get(..prefix.len())?.eq_ignore_ascii_case(prefix) {
                    return None;
                }
                let rest = name.get(prefix.len()..)?.to_string();
                let path: Vec<String> = rest.split("__").map(str::to_string).collect();
                let mut error = None;
                if path.iter().any(String::is_empty) {
                    error = Some(format!(
                        "a part of the key is empty: separate the parts with two underscores, e.g. \
                         {prefix}DOWNLOAD__ATTEMPTS"
                    ));
                }
                let raw = value.into_string().unwrap_or_else(|_| {
                    error = Some("the value is not valid UTF-8".into());
                    String::new()
                });
                let mut o = Override::new(path, &raw, Origin::Env { var: name });
                o.case_insensitive = true;
                o.error = error;
                Some(o)
            })
            .collect();
        found.sort_by_key(|o| o.origin.to_string());
        found
    }

    fn new(path: Vec<String>, raw: &str, origin: Origin) -> Override {
        Override {
            key: dotted(&path),
            path,
            value: parse_value(raw),
            origin,
            raw: raw.to_string(),
            case_insensitive: false,
            error: None,
        }
    }

    /// The value as shown to people: secrets hidden.
    pub fn shown(&self) -> toml::Value {
        if self.path.last().is_some_and(|k| is_secret(k)) {
            toml::Value::String(REDACTED.into())
        } else {
            self.value.clone()
        }
    }

    /// This override as shown to people: its secret hidden.
    pub fn masked(&self) -> Override {
        Override { value: self.shown(), ..self.clone() }
    }

    /// Sets the value in the table, creating sections as needed. An environment variable's key parts are
    /// matched to the known keys in any case.
    pub(crate) fn apply(&mut self, table: &mut toml::Table, schema: &Schema) -> Result<(), String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut level = table;
        let last = self.path.len().saturating_sub(1);
        for i in 0..self.path.len() {
            if self.case_insensitive {
                let parent = &self.path[..i];
                let given = &self.path[i];
                let known = schema.fields(parent).and_then(|f| f.iter().find(|k| k.eq_ignore_ascii_case(given)));
                self.path[i] = match known {
                    Some(k) => k.to_string(),
                    None => match level.keys().find(|k| k.eq_ignore_ascii_case(given)) {
                        Some(k) => k.clone(),
                        None if schema.is_map(parent) => given.clone(),
                        None => given.to_lowercase(),
                    },
                };
            }
            self.key = dotted(&self.path);
            if i == last {
                level.insert(self.path[i].clone(), self.value.clone());
                return Ok(());
            }
            let entry = level.entry(self.path[i].clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(inner) = entry else {
                return Err(format!(
                    "cannot set {}: {} is {}, not a section",
                    dotted(&self.path),
                    dotted(&self.path[..=i]),
                    found(entry)
                ));
            };
            level = inner;
        }
        Ok(())
    }
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
