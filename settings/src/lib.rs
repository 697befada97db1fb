//! Bindwave's config checking, one checker for `bindwave config check` (the controller's flat keys) and
//! `bindwave-agent config check` (the agent's sections).
//!
//! The settings' own serde types are the schema: [`Schema::of`] learns their keys from the fields serde's
//! derive names, and takes examples from the program's example config. [`read`] lays the overrides (from the
//! environment and flags, [`Override`]) over a TOML file, deserializes, and reports every [`Problem`] with where
//! it is: a line and column of the file (the `toml` crate's own spans), an environment variable, or a flag.
//! A program keeps only its own structs, its checks of meaning (`Outcome::problem`) and its report.
//!
//! Not figment: its metadata names the source of a value (a file, the environment) but not the line and column
//! of a key, and its extraction stops at the first error, where `config check` must report every problem.

mod check;
mod de;
pub mod duration;
mod error;
mod log_filter;
mod overrides;
mod problem;
mod schema;
mod spans;
mod suggest;
mod words;

pub use check::{read, read_table, Outcome};
pub use error::SettingsError;
pub use log_filter::log_filter;
pub use overrides::{is_secret, Override, REDACTED};
pub use problem::{list_problems, Origin, Problem, Style};
pub use schema::Schema;
pub use spans::{line_column, Spans};
pub use suggest::nearest;
pub use words::dotted;
pub use words::found;
