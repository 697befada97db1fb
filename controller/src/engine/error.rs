//! What the engine refuses. It does no IO, so nothing here is about disks, sockets or the store.

use crate::model::RolloutId;

/// Why the engine refused an input or a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// No image has this SHA-256 (or prefix).
    #[error("no image {0} (list images with `bindwave image list`, add one with `bindwave image add FILE`)")]
    UnknownImage(String),
    /// The prefix names more than one image.
    #[error("image prefix {0} matches more than one image: give more characters")]
    AmbiguousImage(String),
    /// No rollout has this id, as the operator wrote it.
    #[error("no rollout {0} (list them with `bindwave rollout list`)")]
    UnknownRollout(String),
    /// A rollout names a device that never said hello.
    #[error("no device {0} has said hello to this controller (list devices with `bindwave device list`)")]
    UnknownDevice(String),
    /// The targets match no device.
    #[error("the rollout would target no device: no device has said hello yet, or the list is empty")]
    EmptyRollout,
    /// The action does not apply in the rollout's present state.
    #[error("cannot {action} rollout {rollout}: it is {state}")]
    InvalidAction { rollout: RolloutId, action: &'static str, state: &'static str },
    /// The image was not verified by a release key the controller trusts (now), and unsigned images are not
    /// allowed: it is not rolled out.
    #[error(
        "image {image} is not rolled out: {why} (add it again signed by a key in `release_keys`: \
         `bindwave image sign`, then `bindwave image add`)"
    )]
    UntrustedImage { image: String, why: String },
    /// A rollout spec or action that does not make sense (the message names the field).
    #[error("invalid request: {0}")]
    BadRequest(String),
}
