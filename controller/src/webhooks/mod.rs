//! Webhooks: a JSON notification to each configured URL on every rollout event (created, started, wave started,
//! wave passed, gate tripped, paused, resumed, finished, aborted, cancelled, emergency stop, a failed
//! analysis measurement), signed with HMAC-SHA256 in `X-Bindwave-Signature`, retried with backoff until
//! delivered, from a queue that survives restarts.
//!
//! `event.rs` says which events an audit entry is and what their body holds (pure); `queue.rs` is the durable
//! queue, a sled tree of the store's database written in the same flush as the audit entry it comes from, so a
//! notification is neither lost nor sent for something a crash forgot; `deliver.rs` posts them, apart from the
//! core task. `bindwave webhook deliveries` lists what was sent, to whom, and how it went.

mod deliver;
pub mod event;
pub mod queue;

use std::path::{Path, PathBuf};

pub use deliver::run as deliver;
pub use event::{signature, Notification};
pub use queue::{Deliveries, Delivery, DeliveryState};

use crate::ControllerError;

/// The file in the data directory that holds the webhook secret, made at first start when webhooks are set.
pub const SECRET_FILE: &str = "webhook.secret";

/// Where notifications go, and the key they are signed with.
#[derive(Clone)]
pub struct Webhooks {
    pub urls: Vec<String>,
    pub secret: ring::hmac::Key,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("urls", &self.urls).finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The webhooks to `urls`, signed with the secret in `secret_file` (made, 32 random bytes as hex, mode
    /// 0600, if it does not exist). Receivers check `X-Bindwave-Signature` with the same secret.
    pub fn load(urls: Vec<String>, secret_file: &Path) -> Result<Webhooks, ControllerError> {
        let bad = |detail: &str| ControllerError::KeyFile {
            path: secret_file.to_path_buf(),
            detail: format!("the webhook secret {detail}"),
        };
        if !secret_file.exists() {
            let mut bytes = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| bad("cannot be made: the system's random number generator failed"))?;
            crate::keys::write_private(secret_file, format!("{}\n", hex::encode(bytes)).as_bytes())?;
        }
        let text = std::fs::read_to_string(secret_file).map_err(crate::error::io_err("read", secret_file))?;
        let text = text.trim();
        if text.len() < 16 {
            return Err(bad("is shorter than 16 characters: give a long random secret"));
        }
        Ok(Webhooks { urls, secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, text.as_bytes()) })
    }

    /// The default secret file of a data directory.
    pub fn secret_path(data_dir: &Path) -> PathBuf {
        data_dir.join(SECRET_FILE)
    }
}
