//! The exit codes of `bindwave`, as `bindwave --help` and the README document them, and which error gets
//! which.

use crate::engine::EngineError;
use crate::ControllerError;

/// It worked.
pub const OK: u8 = 0;
/// Something failed; the message says what.
pub const ERROR: u8 = 1;
/// A wrong flag or value, or an invalid config file (clap uses 2 for usage errors too).
pub const USAGE: u8 = 2;
/// The controller is not reachable.
pub const UNREACHABLE: u8 = 3;
/// No such rollout, image or device.
pub const NOT_FOUND: u8 = 4;
/// The controller refused the action in the rollout's present state (resume a finished rollout, say).
pub const REFUSED: u8 = 5;

/// The exit code for an error.
pub fn exit_code(e: &ControllerError) -> u8 {
    match e {
        ControllerError::Unreachable { .. } => UNREACHABLE,
        ControllerError::Engine(
            EngineError::UnknownImage(_) | EngineError::UnknownRollout(_) | EngineError::UnknownDevice(_),
        ) => NOT_FOUND,
        ControllerError::Api { status: 404, .. } => NOT_FOUND,
        ControllerError::Engine(EngineError::InvalidAction { .. }) | ControllerError::Api { status: 409, .. } => {
            REFUSED
        }
        ControllerError::Config { .. } | ControllerError::ConfigProblems { .. } | ControllerError::Setting { .. } => {
            USAGE
        }
        _ => ERROR,
    }
}
