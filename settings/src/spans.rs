//! Where each key of a TOML file is, read with the `toml` crate's own parser (`Spanned` keys), and where a
//! value came from once the environment and flags are laid over the file.

use serde::Deserialize;

use crate::{Origin, Override};

/// Line and column (1-based, in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// Where each key of the file is: a tree of key spans. Read it with `toml::from_str::<Spans>(text)`.
#[derive(Debug, Default)]
pub struct Spans(Vec<(String, std::ops::Range<usize>, Spans)>);

impl Spans {
    /// The start of the deepest key of `path` found in the file.
    pub fn find(&self, path: &[String]) -> Option<usize> {
        let (first, rest) = path.split_first()?;
        let (_, span, inner) = self.0.iter().find(|(k, _, _)| k == first)?;
        inner.find(rest).or(Some(span.start))
    }
}

impl<'de> Deserialize<'de> for Spans {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SpansVisitor)
    }
}

struct SpansVisitor;

impl<'de> serde::de::Visitor<'de> for SpansVisitor {
    type Value = Spans;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Spans, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<toml::Spanned<String>>()? {
            let inner = map.next_value::<Spans>()?;
            let span = key.span();
            entries.push((key.into_inner(), span, inner));
        }
        Ok(Spans(entries))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Spans, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Spans::default())
    }

    fn visit_bool<E>(self, _: bool) -> Result<Spans, E> {
        Ok(Spans::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Spans, E> {
        Ok(Spans::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Spans, E> {
        Ok(Spans::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Spans, E> {
        Ok(Spans::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Spans, E> {
        Ok(Spans::default())
    }
}

/// Finds where a key's value came from: the last override that set it (or a section holding it), else its
/// place in the file.
pub(crate) struct Locator<'a> {
    pub text: &'a str,
    pub spans: &'a Spans,
    pub overrides: &'a [Override],
}

impl Locator<'_> {
    pub fn origin(&self, path: &[String]) -> Origin {
        if let Some(o) = self.overrides.iter().rev().find(|o| !path.is_empty() && path.starts_with(&o.path)) {
            return o.origin.clone();
        }
        let (line, column) = self.spans.find(path).map(|at| line_column(self.text, at)).unzip();
        Origin::File { line, column }
    }
}
