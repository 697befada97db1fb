//! How messages name keys, values and what a key takes.

use crate::Style;

/// How a message names a key: `` `attempts` in [download] ``, `` `device_id` ``, or `[download]` for a section.
/// In the flat style the key leads the problem already, so it is not named again.
pub(crate) fn subject(style: Style, path: &[String], section: bool) -> String {
    match (style, path.split_last()) {
        (Style::Flat, _) => String::new(),
        (_, Some((_, []))) if section => format!("[{}]", dotted(path)),
        (_, Some((last, parent))) => name(parent, last),
        (_, None) => "the config".into(),
    }
}

/// `` `key` `` or `` `key` in [section] ``.
pub(crate) fn name(parent: &[String], key: &str) -> String {
    if parent.is_empty() {
        format!("`{key}`")
    } else {
        format!("`{key}` in [{}]", dotted(parent))
    }
}

/// "`subject` rest", or "rest" alone where the subject is not named.
pub(crate) fn about(subject: &str, rest: &str) -> String {
    if subject.is_empty() {
        rest.to_string()
    } else {
        format!("{subject} {rest}")
    }
}

/// What a key takes, in words, from serde's own description of what it expected and the example value.
pub(crate) fn expected(serde_expected: &str, example: Option<&toml::Value>) -> String {
    let whole = |range: &str| format!("a whole number {range}");
    let nonzero = serde_expected.strip_prefix("a nonzero ");
    match nonzero.unwrap_or(serde_expected) {
        "a string" | "path string" | "a borrowed string" | "a character" => "a string".into(),
        "a sequence" => match example {
            Some(toml::Value::Array(items)) if items.iter().all(toml::Value::is_str) => "a list of strings".into(),
            _ => "a list".into(),
        },
        "a map" => "a section".into(),
        s if s.starts_with("struct ") => "a section".into(),
        "a boolean" => "true or false".into(),
        "socket address" => "an address with a port (host:port)".into(),
        "f32" | "f64" => "a number".into(),
        "u8" => whole(&format!("from {} to 255", u8::from(nonzero.is_some()))),
        "u16" => whole(&format!("from {} to 65535", u8::from(nonzero.is_some()))),
        "u32" => whole(&format!("from {} to 4294967295", u8::from(nonzero.is_some()))),
        "u64" | "u128" | "usize" => whole(&format!("of at least {}", u8::from(nonzero.is_some()))),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => whole("").trim_end().to_string(),
        _ => serde_expected.to_string(),
    }
}

/// A value as messages name it: `the string "ten"`, `the number 0`, `a list`.
pub fn found(value: &toml::Value) -> String {
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

/// An example value as a message shows it: a section as its first key (`url = "mqtt://..."`).
pub(crate) fn example_text(example: &toml::Value) -> String {
    match example {
        toml::Value::Table(t) => match t.iter().next() {
            Some((k, v)) => format!("{} = {}", dotted(std::slice::from_ref(k)), example_text(v)),
            None => "{}".into(),
        },
        other => other.to_string(),
    }
}

/// A key path as TOML writes it, quoting parts that are not bare keys.
pub fn dotted(path: &[String]) -> String {
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
