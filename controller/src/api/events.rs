//! `GET /api/v1/events`: the core's durable changes as server-sent events, for views that follow the fleet
//! live (the console). An event says only that the state changed, and how often so far; the client reads what
//! it shows again through the API, so there is one way to read the state, and it is the API's.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::handle::Core;

/// Changes closer together than this are one event: a client reads the state at most this often, however
/// busy the fleet, and never later than this after a change.
pub const COALESCE: Duration = Duration::from_millis(250);

/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event of the stream (`event: change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// The count of the core's durable changes since it started: it grows; a client that sees it move reads
    /// again.
    pub changes: u64,
}

/// The state's changes, as they become durable: one `change` event at once, then one after each change (at
/// most one per 250 ms). Read it with any server-sent-events client that can send the bearer token.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "operations",
    responses((status = 200, description = "`text/event-stream` of `change` events", content_type = "text/event-stream", body = Change))
)]
pub async fn events(State(core): State<Core>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((core.changes(), true), |(mut rx, first)| async move {
        if !first {
            tokio::time::sleep(COALESCE).await;
            // The core stopped: the stream ends.
            rx.changed().await.ok()?;
        }
        let change = Change { changes: *rx.borrow_and_update() };
        let event = Event::default().event("change").json_data(change).unwrap_or_default();
        Some((Ok(event), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
