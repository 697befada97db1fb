//! A serde `Deserializer` over a TOML table that knows where it is. It is how the settings' own types drive
//! the checking: it writes down every struct's field names as serde's derive hands them over
//! (`deserialize_struct(name, fields, ..)`), skips and writes down the keys that are not among them (instead of
//! failing on the first), and gives every error the key path it is about.
//!
//! Not `serde_ignored`: the settings deny unknown fields, and a "did you mean" needs the names that were
//! expected, which only the struct's own call carries. Not `serde_path_to_error` either: it gives paths, but
//! neither the field names nor the unknown keys.

use std::cell::RefCell;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// What one pass over the table saw.
#[derive(Default)]
pub(crate) struct Recorder {
    /// Each struct's path and its field names.
    pub structs: RefCell<Vec<(Vec<String>, &'static [&'static str])>>,
    /// The paths of free-key sections (maps).
    pub maps: RefCell<Vec<Vec<String>>>,
    /// Keys that are not fields of their struct.
    pub unknown: RefCell<Vec<Vec<String>>>,
    /// Keys of a free-key section that are top-level keys: written after the section's header by mistake.
    pub misplaced: RefCell<Vec<Vec<String>>>,
    /// The top-level keys that are not sections, to tell a misplaced one.
    pub root_leaves: Vec<String>,
}

/// Why a value did not deserialize.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// The type's own words (a version that does not parse).
    Custom(String),
    /// A value of the wrong type (`found` as serde describes it) or out of range.
    Mismatch { expected: String },
    /// A name that is not one of the choices.
    Variant { expected: &'static [&'static str] },
    /// A required field that is not there.
    Missing(&'static str),
}

/// An error with the path of the key it is about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    pub kind: Kind,
    pub path: Option<Vec<String>>,
    /// For a list: the item (0-based) at fault.
    pub item: Option<usize>,
}

impl DeError {
    fn new(kind: Kind) -> DeError {
        DeError { kind, path: None, item: None }
    }

    fn at(mut self, path: &[String]) -> DeError {
        if self.path.is_none() {
            self.path = Some(path.to_vec());
        }
        self
    }
}

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Custom(m) => f.write_str(m),
            Kind::Mismatch { expected } => write!(f, "expected {expected}"),
            Kind::Variant { expected } => write!(f, "expected one of {expected:?}"),
            Kind::Missing(field) => write!(f, "missing field `{field}`"),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError::new(Kind::Custom(msg.to_string()))
    }

    fn invalid_type(_: de::Unexpected, exp: &dyn de::Expected) -> Self {
        DeError::new(Kind::Mismatch { expected: exp.to_string() })
    }

    fn invalid_value(_: de::Unexpected, exp: &dyn de::Expected) -> Self {
        DeError::new(Kind::Mismatch { expected: exp.to_string() })
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(Kind::Variant { expected })
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(Kind::Missing(field))
    }
}

/// The deserializer of one value, at its path.
pub(crate) struct ValueDe<'a> {
    pub value: &'a toml::Value,
    pub path: Vec<String>,
    pub rec: &'a Recorder,
}

impl<'a> ValueDe<'a> {
    fn child(&self, key: &str, value: &'a toml::Value) -> ValueDe<'a> {
        let mut path = self.path.clone();
        path.push(key.to_string());
        ValueDe { value, path, rec: self.rec }
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        use toml::Value as V;
        let path = self.path.clone();
        let result = match self.value {
            V::String(s) => visitor.visit_borrowed_str(s),
            V::Integer(i) => visitor.visit_i64(*i),
            V::Float(f) => visitor.visit_f64(*f),
            V::Boolean(b) => visitor.visit_bool(*b),
            V::Datetime(d) => visitor.visit_string(d.to_string()),
            V::Array(items) => visitor.visit_seq(Items { items: items.iter(), de: &self, index: 0 }),
            V::Table(t) => {
                let entries: Vec<_> = t.iter().collect();
                visitor.visit_map(Entries { entries: entries.into_iter(), de: &self, value: None })
            }
        };
        result.map_err(|e| e.at(&path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let toml::Value::Table(t) = self.value else { return self.deserialize_any(visitor) };
        self.rec.maps.borrow_mut().push(self.path.clone());
        let mut entries = Vec::new();
        for (k, v) in t {
            if !self.path.is_empty() && self.rec.root_leaves.iter().any(|l| l == k) {
                self.rec.misplaced.borrow_mut().push(self.child(k, v).path);
            } else {
                entries.push((k, v));
            }
        }
        let path = self.path.clone();
        visitor.visit_map(Entries { entries: entries.into_iter(), de: &self, value: None }).map_err(|e| e.at(&path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let toml::Value::Table(t) = self.value else { return self.deserialize_any(visitor) };
        self.rec.structs.borrow_mut().push((self.path.clone(), fields));
        let mut entries = Vec::new();
        for (k, v) in t {
            if fields.contains(&k.as_str()) {
                entries.push((k, v));
            } else {
                self.rec.unknown.borrow_mut().push(self.child(k, v).path);
            }
        }
        let path = self.path.clone();
        visitor.visit_map(Entries { entries: entries.into_iter(), de: &self, value: None }).map_err(|e| e.at(&path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            toml::Value::String(s) => {
                visitor.visit_enum(s.as_str().into_deserializer()).map_err(|e: DeError| e.at(&self.path))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        seq tuple tuple_struct identifier ignored_any
    }
}

/// A list's items.
struct Items<'a, 'b> {
    items: std::slice::Iter<'a, toml::Value>,
    de: &'b ValueDe<'a>,
    index: usize,
}

impl<'de> SeqAccess<'de> for Items<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(value) = self.items.next() else { return Ok(None) };
        let index = self.index;
        self.index += 1;
        let item = ValueDe { value, path: self.de.path.clone(), rec: self.de.rec };
        seed.deserialize(item).map(Some).map_err(|mut e| {
            if e.path.as_deref().is_none_or(|p| p == self.de.path.as_slice()) && e.item.is_none() {
                e.item = Some(index);
            }
            e.at(&self.de.path)
        })
    }
}

/// A section's keys and values.
struct Entries<'a, 'b> {
    entries: std::vec::IntoIter<(&'a String, &'a toml::Value)>,
    de: &'b ValueDe<'a>,
    value: Option<(&'a String, &'a toml::Value)>,
}

impl<'de> MapAccess<'de> for Entries<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.entries.next() else { return Ok(None) };
        self.value = Some((k, v));
        let key: de::value::BorrowedStrDeserializer<'de, DeError> = de::value::BorrowedStrDeserializer::new(k);
        seed.deserialize(key).map(Some).map_err(|e| e.at(&self.de.child(k, v).path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((k, v)) = self.value.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        let child = self.de.child(k, v);
        let path = child.path.clone();
        seed.deserialize(child).map_err(|e| e.at(&path))
    }
}

/// Deserializes `T` from a table, writing down what it sees in `rec`.
pub(crate) fn from_table<T: de::DeserializeOwned>(table: &toml::Value, rec: &Recorder) -> Result<T, DeError> {
    T::deserialize(ValueDe { value: table, path: Vec::new(), rec })
}
