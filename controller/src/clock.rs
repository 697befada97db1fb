//! The wall clock, read by the service and the API only: the engine is handed the time.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::Millis;

/// Now, in milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
