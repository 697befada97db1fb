use std::net::SocketAddr;
use std::path::PathBuf;

use bindwave_proto::wire::Reason;

use crate::engine::EngineError;

/// Everything that can go wrong in the controller and its CLI.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// What the engine refused.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("not a valid bind: {0}")]
    InvalidBind(Reason),
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// Another process holds the store's lock.
    #[error(
        "the store in {path} is in use by another process (is another `bindwave serve` using this data \
         directory?): {source}"
    )]
    StoreLocked { path: PathBuf, source: sled::Error },
    #[error("cannot open the store in {path}: {source}")]
    StoreOpen { path: PathBuf, source: sled::Error },
    /// The store's files are damaged: refused rather than started from older records.
    #[error(
        "the store in {path} is damaged: {detail}. Nothing was started on it. Restore the data directory from a \
         backup, or move {path} aside and start again on an empty store: the phones announce themselves with their \
         next hello, and rollouts and images must be created again"
    )]
    StoreDamaged { path: PathBuf, detail: String },
    #[error("store operation failed")]
    Store(#[from] sled::Error),
    #[error("cannot encode record {key} for the store: {detail} (this is a bug; please report it with the log)")]
    StoreEncode { key: String, detail: String },
    #[error("stored record {key} is unreadable: {detail}")]
    StoreCorrupt { key: String, detail: String },
    /// A backup archive that cannot be written or restored: what is wrong with it, and what to do.
    #[error("backup {path}: {detail}")]
    Backup { path: PathBuf, detail: String },
    #[error("cannot {action} {path}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the payload {path} is empty: a bind carries a firmware image (check the file given to `image pack`)")]
    EmptyPayload { path: PathBuf },
    /// A bind that the controller's release keys do not verify, and that it therefore neither adds nor
    /// rolls out.
    #[error("untrusted image: {why}; {}", untrusted_hint(why))]
    ImageUntrusted { why: bindwave_proto::Untrusted },
    #[error("signing key: {detail}")]
    Key { detail: String },
    #[error("key file {path}: {detail}")]
    KeyFile { path: PathBuf, detail: String },
    #[error("cannot {what} of the development PKI")]
    Certificate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot listen for HTTP on {addr} (is another service on that port? choose one with --http-listen)")]
    HttpListen { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Link(#[from] bindwave_link::LinkError),
    #[cfg(feature = "sim")]
    #[error(transparent)]
    Agent(#[from] bindwave_agent::AgentError),
    #[error(transparent)]
    Proto(#[from] bindwave_proto::ProtoError),
    #[error("controller not reachable at {url}: {detail} (is `bindwave serve` running? set --controller or BINDWAVE_CONTROLLER)")]
    Unreachable { url: String, detail: String },
    #[error("the controller answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("config {path} is invalid: {problems} (`bindwave config check --config {path}` explains)")]
    Config { path: PathBuf, problems: String },
    #[error("{key}: {detail}")]
    Setting { key: &'static str, detail: String },
    #[error("{path} has {count} problem{} (listed above)", if *count == 1 { "" } else { "s" })]
    ConfigProblems { path: String, count: usize },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// No token, or one the controller does not know (revoked, mistyped).
    #[error("{0}")]
    Unauthorized(String),
    /// A token whose role is too small for the request.
    #[error("{0}")]
    Forbidden(String),
    #[error("the upload is larger than the controller's max_upload_size of {limit} bytes (raise max_upload_size in its config)")]
    TooLarge { limit: u64 },
    #[error("TLS: {detail}")]
    Tls { detail: String },
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("the controller's core stopped unexpectedly: {0} (this is a bug; please report it with the log)")]
    CoreStopped(String),
}

impl ControllerError {
    /// The HTTP status an API error is returned with.
    pub fn http_status(&self) -> u16 {
        use ControllerError::*;
        use EngineError::*;
        match self {
            Engine(UnknownImage(_) | UnknownRollout(_) | UnknownDevice(_)) => 404,
            Engine(AmbiguousImage(_) | EmptyRollout | EngineError::BadRequest(_)) => 400,
            InvalidBind(_) | ControllerError::BadRequest(_) | Proto(_) | EmptyPayload { .. } => 400,
            ImageUntrusted { .. } | Engine(UntrustedImage { .. }) => 400,
            Engine(InvalidAction { .. }) | Conflict(_) => 409,
            NotFound(_) => 404,
            Unauthorized(_) => 401,
            Forbidden(_) => 403,
            TooLarge { .. } => 413,
            ShuttingDown => 503,
            _ => 500,
        }
    }
}

/// What to do about a bind the controller's release keys do not verify.
fn untrusted_hint(why: &bindwave_proto::Untrusted) -> &'static str {
    match why {
        bindwave_proto::Untrusted::Unsigned => {
            "sign it with `bindwave image sign FILE --key release.key` (a lab controller may take unsigned binds \
             with allow_unsigned_images = true)"
        }
        bindwave_proto::Untrusted::UnknownKey(_) => {
            "sign it with a release key, or add the key's public half to `release_keys` in the controller's config"
        }
        bindwave_proto::Untrusted::Invalid(_) => {
            "the bind was altered after it was signed, or the signature is forged: take the bind from its source \
             and sign it again"
        }
    }
}

pub(crate) fn io_err(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ControllerError {
    let path = path.to_path_buf();
    move |source| ControllerError::Io { action, path, source }
}

/// An error and its causes on one line, each cause once (shared with the agent).
pub use bindwave_link::error_chain as chain;
