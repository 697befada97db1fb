use std::path::PathBuf;

/// What can stop the agent from running. Problems with one job are not errors: they become a job's
/// `rejected` or `failed` report with a [`bindwave_proto::wire::Reason`].
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot read agent config {path}")]
    ConfigRead { path: PathBuf, source: std::io::Error },
    /// Everything wrong with the config, each problem with where it is (line, environment variable or flag).
    #[error("agent config {path} is invalid: {}", crate::config::list_problems(problems))]
    ConfigProblems { path: PathBuf, problems: Vec<crate::config::Problem> },
    #[error("agent config is invalid: {0}")]
    ConfigInvalid(String),
    #[error(transparent)]
    Link(#[from] bindwave_link::LinkError),
    #[error(transparent)]
    Proto(#[from] bindwave_proto::ProtoError),
    #[error("state directory {path} is not usable (check it exists and is writable)")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot {action} {path}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("hardware level probe failed: {0} (check [hardware_probe] in the agent config)")]
    Probe(String),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
    #[error("the MQTT client stopped: {0}")]
    Mqtt(String),
}

/// Builds the `map_err` closure for a failed file operation.
pub(crate) fn io_err(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AgentError {
    let path = path.to_path_buf();
    move |source| AgentError::Io { action, path, source }
}

/// An error and its causes on one line, each cause once.
pub use bindwave_link::error_chain as chain;
