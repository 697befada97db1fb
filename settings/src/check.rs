//! The checking, driven by the settings' own type: lay the overrides over the file, deserialize, and on each
//! error write the problem down, take the offending key out (or, for a required one, put the example's value
//! in its place) and try again, until the rest reads. So every problem is reported, not just the first, and a
//! value comes out whenever the problems left its required keys alone.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;

use crate::de::{from_table, DeError, Kind, Recorder};
use crate::overrides::is_secret;
use crate::schema::Schema;
use crate::spans::{line_column, Locator, Spans};
use crate::suggest::nearest;
use crate::words::dotted;
use crate::words::{about, example_text, expected, found, name, subject};
use crate::{Origin, Override, Problem, Style};

/// The most passes over one config: far more than it has keys.
const PASSES: usize = 1000;

/// What reading a config gave.
#[derive(Debug)]
pub struct Outcome<T> {
    /// The settings, unless a required key was missing or wrong. Keys found wrong are left out, so they take
    /// their defaults and the rest can still be checked for meaning.
    pub value: Option<T>,
    /// Every problem found so far.
    pub problems: Vec<Problem>,
    /// The overrides that were applied, in order.
    pub overrides: Vec<Override>,
    style: Style,
    text: String,
    spans: Spans,
}

impl<T> Outcome<T> {
    /// Adds a problem found by a check of meaning (a broker URL that does not parse), about the key at `path`,
    /// located in the file or at the override that set it.
    pub fn problem(&mut self, path: &[&str], message: impl Into<String>) {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let p = self.locate(&path, message.into(), None);
        self.problems.push(p);
    }

    fn locate(&self, path: &[String], message: String, suggestion: Option<String>) -> Problem {
        let origin = Locator { text: &self.text, spans: &self.spans, overrides: &self.overrides }.origin(path);
        Problem { key: (!path.is_empty()).then(|| dotted(path)), origin, message, suggestion, style: self.style }
    }

    /// The problems in the order of the file, then the environment, then the flags.
    pub fn sort(&mut self) {
        self.problems.sort_by_key(|p| p.origin.order());
    }
}

/// Reads `text` (a TOML file) with `overrides` laid over it (in order: the last one wins) as a `T`, and
/// reports every problem: TOML syntax (with line and column), unknown keys (with the nearest known key, or
/// the section they belong in), types and ranges as `T`'s own serde types check them, missing keys.
pub fn read<T: DeserializeOwned>(schema: &Schema, style: Style, text: &str, overrides: &[Override]) -> Outcome<T> {
    let mut out = Outcome {
        value: None,
        problems: Vec::new(),
        overrides: Vec::new(),
        style,
        text: text.to_string(),
        spans: toml::from_str(text).unwrap_or_default(),
    };
    let table = match toml::from_str::<toml::Table>(text) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_column(text, s.start)).unzip();
            let detail = e.message().trim().replace('\n', "; ");
            let message = format!("TOML syntax error: {detail}");
            out.problems.push(Problem::general(Origin::File { line, column }, message, style));
            return out;
        }
    };
    read_into(schema, table, overrides, out)
}

/// [`read`] on a table already read (the values of a file checked before), with no places in a file.
pub fn read_table<T: DeserializeOwned>(
    schema: &Schema,
    style: Style,
    table: toml::Table,
    overrides: &[Override],
) -> Outcome<T> {
    let out = Outcome {
        value: None,
        problems: Vec::new(),
        overrides: Vec::new(),
        style,
        text: String::new(),
        spans: Spans::default(),
    };
    read_into(schema, table, overrides, out)
}

fn read_into<T: DeserializeOwned>(
    schema: &Schema,
    mut table: toml::Table,
    overrides: &[Override],
    mut out: Outcome<T>,
) -> Outcome<T> {
    for o in overrides {
        let mut o = o.clone();
        match o.apply(&mut table, schema) {
            Ok(()) => out.overrides.push(o),
            Err(message) => {
                let p = Problem {
                    key: Some(o.key.clone()),
                    origin: o.origin.clone(),
                    message,
                    suggestion: None,
                    style: out.style,
                };
                out.problems.push(p);
            }
        }
    }
    let mut work = toml::Value::Table(table);
    let mut findings: Vec<(Vec<String>, String, Option<String>)> = Vec::new();
    let mut removed = BTreeSet::new();
    let mut texted = BTreeSet::new();
    let mut suggested: Vec<(Vec<String>, String)> = Vec::new();
    let mut stand_in = false;
    let mut last_error = None;
    let root_leaves = schema.root_leaves();
    // Each pass takes out (or stands in for) at least one key, so the passes end; the bound is a guard.
    for _ in 0..PASSES {
        let rec = Recorder { root_leaves: root_leaves.clone(), ..Recorder::default() };
        let result = from_table::<T>(&work, &rec);
        let mut changed = false;
        for path in rec.unknown.take() {
            let is_table = get(&work, &path).is_some_and(toml::Value::is_table);
            let (message, suggestion) = unknown_key(schema, out.style, &path, is_table);
            if let (Some(s), Some((_, parent))) = (&suggestion, path.split_last()) {
                suggested.push((parent.to_vec(), s.clone()));
            }
            changed |= remove(&mut work, &path);
            findings.push((path, message, suggestion));
        }
        for path in rec.misplaced.take() {
            let Some((key, parent)) = path.split_last() else { continue };
            let message =
                format!("`{key}` in [{}] is a top-level key: move it before the first [section]", dotted(parent));
            let suggestion = Some(key.clone());
            changed |= remove(&mut work, &path);
            findings.push((path, message, suggestion));
        }
        let e = match result {
            Ok(v) => {
                out.value = (!stand_in).then_some(v);
                break;
            }
            Err(e) => e,
        };
        let path = e.path.clone().unwrap_or_default();
        match &e.kind {
            Kind::Missing(field) => {
                let mut full = path.clone();
                full.push(field.to_string());
                let misspelt = suggested.iter().any(|(p, s)| *p == path && s == field);
                let Some(example) = schema.example(&full).cloned() else {
                    last_error = Some(e);
                    break;
                };
                if !removed.contains(&full) && !misspelt {
                    findings.push((path.clone(), missing(schema, &full), None));
                }
                // The example's value stands in, so the rest is checked too; the settings are not used.
                changed |= insert(&mut work, &full, example);
                stand_in = true;
            }
            Kind::Mismatch { .. } if !texted.contains(&path) && as_text(&mut out.overrides, &path, &mut work) => {
                // A value given as text where the key takes a string is that text.
                texted.insert(path);
                changed = true;
            }
            kind => {
                let current = get(&work, &path).cloned();
                let message = value_problem(schema, out.style, &path, kind, current.as_ref(), e.item);
                findings.push((path.clone(), message, None));
                if !path.is_empty() && remove(&mut work, &path) {
                    removed.insert(path);
                    changed = true;
                } else {
                    last_error = Some(e);
                    break;
                }
            }
        }
        if !changed {
            last_error = None;
            break;
        }
    }
    for (path, message, suggestion) in findings {
        let p = out.locate(&path, message, suggestion);
        out.problems.push(p);
    }
    if out.value.is_none() && out.problems.is_empty() {
        let detail = last_error.map_or_else(|| "it does not read".to_string(), |e: DeError| e.to_string());
        out.problems.push(Problem::general(
            Origin::File { line: None, column: None },
            format!("the config cannot be read: {detail}"),
            out.style,
        ));
    }
    out
}

/// Sets the override of `path` to its text as written, if it was read as another type.
fn as_text(overrides: &mut [Override], path: &[String], work: &mut toml::Value) -> bool {
    let Some(o) = overrides.iter_mut().rev().find(|o| o.path == path) else { return false };
    if o.value.is_str() {
        return false;
    }
    o.value = toml::Value::String(o.raw.clone());
    insert(work, path, o.value.clone())
}

fn get<'a>(value: &'a toml::Value, path: &[String]) -> Option<&'a toml::Value> {
    path.iter().try_fold(value, |v, k| v.as_table()?.get(k))
}

fn remove(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else { return false };
    let table = parent.iter().try_fold(value, |v, k| v.as_table_mut()?.get_mut(k)).and_then(toml::Value::as_table_mut);
    table.is_some_and(|t| t.remove(last).is_some())
}

fn insert(value: &mut toml::Value, path: &[String], new: toml::Value) -> bool {
    let Some((last, parent)) = path.split_last() else { return false };
    let table = parent.iter().try_fold(value, |v, k| v.as_table_mut()?.get_mut(k)).and_then(toml::Value::as_table_mut);
    match table {
        Some(t) => {
            t.insert(last.clone(), new);
            true
        }
        None => false,
    }
}

/// "missing key `state_dir`, e.g. state_dir = ...", or "missing section [broker], with at least url = ...".
fn missing(schema: &Schema, full: &[String]) -> String {
    let Some((key, parent)) = full.split_last() else { return "missing key".into() };
    let example = example_of(schema, full);
    if schema.is_section(full) {
        format!("missing section [{}], with at least {example}", dotted(full))
    } else {
        format!("missing key {}, e.g. {} = {example}", name(parent, key), dotted(std::slice::from_ref(key)))
    }
}

/// The example of a key as a message shows it; for a section, its first key in the order the type declares
/// them (`url = "mqtt://..."`).
pub(crate) fn example_of(schema: &Schema, path: &[String]) -> String {
    let first = schema.fields(path).and_then(|fields| {
        fields.iter().find_map(|f| {
            let mut here = path.to_vec();
            here.push(f.to_string());
            schema.example(&here).map(|v| format!("{f} = {}", example_text(v)))
        })
    });
    first.or_else(|| schema.example(path).map(example_text)).unwrap_or_default()
}

/// What is wrong with a value, in words: what the key takes, with an example, and what was found.
fn value_problem(
    schema: &Schema,
    style: Style,
    path: &[String],
    kind: &Kind,
    current: Option<&toml::Value>,
    item: Option<usize>,
) -> String {
    let section = schema.is_section(path);
    let who = subject(style, path, section);
    let example = schema.example(path);
    let shown_example = example_of(schema, path);
    let want = match kind {
        Kind::Custom(m) => {
            // The type's own words, with an example unless they give one.
            let eg = example.filter(|_| !m.contains("e.g.")).map(|_| format!(" (e.g. {shown_example})"));
            let eg = eg.unwrap_or_default();
            return if who.is_empty() { format!("{m}{eg}") } else { format!("{who}: {m}{eg}") };
        }
        Kind::Variant { expected } => {
            let names: Vec<String> = expected.iter().map(|v| format!("\"{v}\"")).collect();
            format!("one of {}", names.join(", "))
        }
        Kind::Mismatch { expected: e } => expected(e, example),
        Kind::Missing(field) => return format!("missing key `{field}`"),
    };
    let eg = match example {
        Some(_) if section => format!(", with e.g. {shown_example}"),
        Some(_) => format!(", e.g. {shown_example}"),
        None => String::new(),
    };
    let secret = path.last().is_some_and(|k| is_secret(k));
    let shown = match (current, item) {
        (Some(v), _) if secret => format!("a value of type {}", v.type_str()),
        (Some(toml::Value::Array(items)), Some(n)) if n < items.len() => {
            format!("a list whose item {} is {}", n + 1, found(&items[n]))
        }
        (Some(v), _) => found(v),
        (None, _) => "nothing".into(),
    };
    let hint = match current {
        Some(toml::Value::String(s)) if want.starts_with("a whole number") && s.trim().parse::<i64>().is_ok() => {
            ": remove the quotes".to_string()
        }
        Some(toml::Value::String(s)) if want.starts_with("a list") && !secret => {
            format!(": write a list, e.g. [{}]", toml::Value::String(s.clone()))
        }
        _ => String::new(),
    };
    about(&who, &format!("must be {want}{eg}; found {shown}{hint}"))
}

/// "unknown key `atempts` in [download]; did you mean `attempts`?", or where the key belongs if it is known
/// elsewhere (a top-level key written after a [section] header is the classic TOML slip).
fn unknown_key(schema: &Schema, style: Style, path: &[String], is_table: bool) -> (String, Option<String>) {
    let Some((key, parent)) = path.split_last() else { return ("unknown key".into(), None) };
    let section = parent.is_empty() && is_table;
    let what = match (style, section, parent.is_empty()) {
        (Style::Flat, _, _) => "unknown key".to_string(),
        (_, true, _) => format!("unknown section [{key}]"),
        (_, false, true) => format!("unknown key `{key}`"),
        (_, false, false) => format!("unknown key `{key}` in [{}]", dotted(parent)),
    };
    let fields = schema.fields(parent).unwrap_or_default();
    if let Some(near) = nearest(key, fields.iter().copied()) {
        let near_shown = if section { format!("[{near}]") } else { format!("`{near}`") };
        return (format!("{what}; did you mean {near_shown}?"), Some(near.to_string()));
    }
    // Known elsewhere: at the top level, or in another section.
    if !parent.is_empty() && schema.root_leaves().iter().any(|k| k == key) {
        return (format!("{what}; it belongs at the top level, before the first [section]"), Some(key.clone()));
    }
    for (s, inner) in schema.sections() {
        if Some(s) != parent.first().map(String::as_str) && inner.contains(&key.as_str()) {
            return (format!("{what}; it belongs in [{s}]"), Some(format!("{s}.{key}")));
        }
    }
    (format!("{what}; the known keys here are: {}", fields.join(", ")), None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        name: String,
        #[serde(default)]
        count: u16,
        inner: Inner,
        #[serde(default)]
        map: BTreeMap<String, u16>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        url: String,
        #[serde(default)]
        retries: Option<u32>,
    }

    const EXAMPLE: &str = "name = \"n\"\ncount = 3\n[inner]\nurl = \"u\"\nretries = 2\n[map]\na = 1\n";

    fn problems(style: Style, text: &str, overrides: &[Override]) -> Vec<String> {
        let schema = Schema::of::<Conf>(EXAMPLE).unwrap();
        let mut out = read::<Conf>(&schema, style, text, overrides);
        out.sort();
        out.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_schema_is_the_types_own() {
        let schema = Schema::of::<Conf>(EXAMPLE).unwrap();
        assert_eq!(schema.fields(&[]), Some(&["name", "count", "inner", "map"][..]));
        assert_eq!(schema.fields(&["inner".to_string()]), Some(&["url", "retries"][..]));
        assert!(schema.is_map(&["map".to_string()]));
        assert_eq!(schema.root_leaves(), ["name", "count"]);
        assert!(schema.unexampled().is_empty());
        assert!(Schema::of::<Conf>("name = 1").is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = "nmae = \"x\"\ncount = 70000\n[inner]\nurl = 5\nretries = \"2\"\nurll = \"u\"\n[map]\ncount = 1\n";
        assert_eq!(
            problems(Style::Nested, text, &[]),
            [
                "line 1, column 1: unknown key `nmae`; did you mean `name`?",
                "line 2, column 1: `count` must be a whole number from 0 to 65535, e.g. 3; found the number 70000",
                "line 4, column 1: `url` in [inner] must be a string, e.g. \"u\"; found the number 5",
                "line 5, column 1: `retries` in [inner] must be a whole number from 0 to 4294967295, e.g. 2; found the \
                 string \"2\": remove the quotes",
                "line 6, column 1: unknown key `urll` in [inner]; did you mean `url`?",
                "line 8, column 1: `count` in [map] is a top-level key: move it before the first [section]",
            ]
        );
        assert_eq!(
            problems(Style::Nested, "name = \"x\"\nretries = 1\n", &[]),
            [
                "line 2, column 1: unknown key `retries`; it belongs in [inner]",
                "missing section [inner], with at least url = \"u\"",
            ]
        );
    }

    #[test]
    fn overrides_win_and_are_named_where_they_are_wrong() {
        let text = "name = \"x\"\n[inner]\nurl = \"u\"\n";
        let env = Override::from_env_prefixed("APP__", [("app__INNER__Retries".into(), "many".into())]);
        let set = Override::parse_set("name=12").unwrap();
        let schema = Schema::of::<Conf>(EXAMPLE).unwrap();
        let out = read::<Conf>(&schema, Style::Nested, text, &[env[0].clone(), set.clone()]);
        assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
        assert_eq!(
            out.problems[0].to_string(),
            "app__INNER__Retries: `retries` in [inner] must be a whole number from 0 to 4294967295, e.g. 2; found \
             the string \"many\""
        );
        // `12` reads as a number; where the key takes a string it is that text.
        let out = read::<Conf>(&schema, Style::Nested, text, &[set]);
        assert_eq!(out.value.map(|c| c.name).as_deref(), Some("12"));
    }

    #[test]
    fn the_flat_style_leads_with_the_key() {
        assert_eq!(
            problems(Style::Flat, "nmae = \"x\"\n[inner]\nurl = \"u\"\n", &[]),
            ["nmae: unknown key; did you mean `name`? (line 1, column 1)"]
        );
        let m = problems(Style::Flat, "name = \n", &[]);
        assert!(m[0].starts_with("line 1, column 8: TOML syntax error: "), "{m:?}");
    }
}
