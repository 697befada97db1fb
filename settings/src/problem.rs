//! A problem with a config, and where it comes from: the file (line and column), an environment variable or a
//! flag.

use serde::Serialize;

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
    /// An environment variable.
    Env { var: String },
    /// A command-line flag: `--set KEY=VALUE` or a dedicated one (`--broker`).
    Flag { flag: String },
}

impl Origin {
    /// The order problems are listed in: the file's own order, then the environment, then the flags.
    pub(crate) fn order(&self) -> (u8, usize, usize) {
        match self {
            Origin::File { line, column } => (0, line.unwrap_or(usize::MAX), column.unwrap_or(0)),
            Origin::Env { .. } => (1, 0, 0),
            Origin::Flag { .. } => (2, 0, 0),
        }
    }
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

/// How a config's keys are named in messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Style {
    /// Sections of keys (the agent): a message names its key (``unknown key `atempts` in [download]``) and a
    /// problem reads `line 11, column 1: <message>`.
    #[default]
    Nested,
    /// One level of keys (the controller): a problem reads `http_listen: <message> (line 2, column 1)`.
    Flat,
}

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The dotted key it is about (`download.attempts`), if it is about one (`null` in JSON if not).
    pub key: Option<String>,
    #[serde(flatten)]
    pub origin: Origin,
    /// What is wrong and what to do, e.g. "unknown key `atempts` in [download]; did you mean `attempts`?".
    pub message: String,
    /// The key probably meant, for an unknown key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// How it reads.
    #[serde(skip)]
    pub style: Style,
}

impl Problem {
    /// A problem about no key in particular, such as a file that cannot be read.
    pub fn general(origin: Origin, message: impl Into<String>, style: Style) -> Problem {
        Problem { key: None, origin, message: message.into(), suggestion: None, style }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = self.origin.to_string();
        match (&self.key, self.style, origin.is_empty()) {
            (Some(key), Style::Flat, true) => write!(f, "{key}: {}", self.message),
            (Some(key), Style::Flat, false) => write!(f, "{key}: {} ({origin})", self.message),
            (_, _, true) => f.write_str(&self.message),
            (_, _, false) => write!(f, "{origin}: {}", self.message),
        }
    }
}

/// Problems on one line each, for an error message: one inline, several on indented lines.
pub fn list_problems(problems: &[Problem]) -> String {
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
