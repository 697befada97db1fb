//! The settings' keys, as their own serde types name them. There is no second table of keys: deserializing a
//! program's example config (which holds every key, each with an example value) through
//! [`crate::de`] writes down each struct's fields as serde's derive passes them, and which sections are
//! free-key maps. The example values give messages their examples.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::DeserializeOwned;

use crate::de::{from_table, Recorder};
use crate::SettingsError;

/// The keys of a settings type, learnt from the type itself, and an example value for each.
#[derive(Debug, Clone)]
pub struct Schema {
    structs: BTreeMap<Vec<String>, &'static [&'static str]>,
    maps: BTreeSet<Vec<String>>,
    example: toml::Value,
}

impl Schema {
    /// The keys of `T`, from deserializing `example`, the program's documented example config. It must
    /// deserialize as `T`; [`Schema::unexampled`] says which keys it lacks.
    pub fn of<T: DeserializeOwned>(example: &str) -> Result<Schema, SettingsError> {
        let table: toml::Table = toml::from_str(example).map_err(|e| SettingsError::Example(e.to_string()))?;
        let example = toml::Value::Table(table);
        let rec = Recorder::default();
        from_table::<T>(&example, &rec).map_err(|e| SettingsError::Example(e.to_string()))?;
        let unknown = rec.unknown.take();
        if let Some(path) = unknown.first() {
            return Err(SettingsError::Example(format!("unknown key {}", path.join("."))));
        }
        Ok(Schema {
            structs: rec.structs.take().into_iter().collect(),
            maps: rec.maps.take().into_iter().collect(),
            example,
        })
    }

    /// The field names of the struct at `path`, if it is one.
    pub fn fields(&self, path: &[String]) -> Option<&'static [&'static str]> {
        self.structs.get(path).copied()
    }

    /// Whether `path` is a section of free keys (part numbers, hardware levels).
    pub fn is_map(&self, path: &[String]) -> bool {
        self.maps.contains(path)
    }

    /// Whether `path` is a section (of known or of free keys).
    pub fn is_section(&self, path: &[String]) -> bool {
        self.structs.contains_key(path) || self.is_map(path)
    }

    /// The top-level keys that are not sections.
    pub fn root_leaves(&self) -> Vec<String> {
        let root = self.fields(&[]).unwrap_or_default();
        root.iter().map(|k| k.to_string()).filter(|k| !self.is_section(std::slice::from_ref(k))).collect()
    }

    /// The top-level sections of known keys, with their fields, in the order the type declares them.
    pub fn sections(&self) -> Vec<(&'static str, &'static [&'static str])> {
        let root = self.fields(&[]).unwrap_or_default();
        root.iter().filter_map(|k| self.fields(&[k.to_string()]).map(|f| (*k, f))).collect()
    }

    /// The example value of a key; in a free-key section, the example of any of its keys.
    pub fn example(&self, path: &[String]) -> Option<&toml::Value> {
        let mut value = &self.example;
        for (i, key) in path.iter().enumerate() {
            let table = value.as_table()?;
            value = match table.get(key) {
                Some(v) => v,
                None if self.is_map(&path[..i]) => table.values().next()?,
                None => return None,
            };
        }
        Some(value)
    }

    /// The fields that the example config leaves out, as dotted keys: a program's test keeps this empty, so
    /// that every key has an example.
    pub fn unexampled(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (path, fields) in &self.structs {
            for f in *fields {
                let mut here = path.clone();
                here.push(f.to_string());
                if self.example(&here).is_none() {
                    out.push(here.join("."));
                }
            }
        }
        out
    }
}
