/// What can go wrong in this crate itself, and a refused log filter ([`crate::log_filter`]). Problems with a
/// config are not errors: they are [`crate::Problem`]s.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The example config a program ships (the source of every example in messages) does not parse or does
    /// not describe its settings; a test of each program keeps this from happening.
    #[error("the built-in example config is not valid: {0}")]
    Example(String),
    /// A log filter that is refused: `why` says which rule it broke.
    #[error("{filter:?} is not a log level or filter: {why} (try info, debug, or info,bindwave=debug)")]
    LogFilter { filter: String, why: String },
}
