//! The handle to the core task: how the HTTP API (or anything else) reaches the engine. Changes go through
//! [`Core::act`] and are answered once durable; reads are closures run against the engine between batches
//! ([`Core::query`]).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{Engine, Input, Reply};
use crate::metrics::Metrics;
use crate::store::backup::Exported;
use crate::ControllerError;

/// Where the core sends an input's answer.
pub(crate) type ReplyTo = oneshot::Sender<Result<Reply, ControllerError>>;
/// Where the core sends a backup's records file back, filled.
pub(crate) type ExportTo = oneshot::Sender<Result<(Exported, std::fs::File), ControllerError>>;
/// A read, run against the engine between batches.
pub(crate) type QueryFn = Box<dyn FnOnce(&Engine) + Send>;

/// A request to the core.
#[allow(clippy::large_enum_variant)] // one per API call, short-lived
pub(crate) enum Request {
    /// Change state: answered after the change is durable.
    Act { input: Input, reply: ReplyTo },
    /// Read state.
    Query(QueryFn),
    /// Copy the store's records into a file, between two batches (`bindwave backup`); the file comes back.
    Backup { to: std::fs::File, reply: ExportTo },
}

/// A handle the HTTP API uses to reach the core.
#[derive(Clone)]
pub struct Core {
    tx: mpsc::Sender<Request>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) images_dir: PathBuf,
    /// The data directory, whose files a backup copies.
    pub(crate) data_dir: PathBuf,
    /// Which uploaded binds are added.
    pub(crate) images: Arc<crate::images::ImagePolicy>,
    /// Counts the core's durable changes: it moves after every commit that changed the state.
    changes: watch::Receiver<u64>,
}

impl Core {
    /// A handle that sends requests to the core on `tx`.
    pub(crate) fn new(
        tx: mpsc::Sender<Request>,
        metrics: Arc<Metrics>,
        data_dir: PathBuf,
        images: crate::images::ImagePolicy,
        changes: watch::Receiver<u64>,
    ) -> Core {
        Core { tx, metrics, images_dir: data_dir.join("images"), data_dir, images: Arc::new(images), changes }
    }

    /// Follows the core's durable changes: `changed().await` wakes after the next commit that changed state.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// Applies an input; answers once its effects are durable.
    pub async fn act(&self, input: Input) -> Result<Reply, ControllerError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Act { input, reply }).await.map_err(|_| ControllerError::ShuttingDown)?;
        rx.await.map_err(|_| ControllerError::ShuttingDown)?
    }

    /// Copies every record of the store into the file `to`, as the store is between two batches, and hands the
    /// file back.
    pub async fn export(&self, to: std::fs::File) -> Result<(Exported, std::fs::File), ControllerError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request::Backup { to, reply }).await.map_err(|_| ControllerError::ShuttingDown)?;
        rx.await.map_err(|_| ControllerError::ShuttingDown)?
    }

    /// Reads the engine's state.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T, ControllerError> {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(move |e: &Engine| drop(tx.send(f(e))));
        self.tx.send(Request::Query(job)).await.map_err(|_| ControllerError::ShuttingDown)?;
        rx.await.map_err(|_| ControllerError::ShuttingDown)
    }
}
