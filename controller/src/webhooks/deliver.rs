//! The deliverer: posts each URL's pending deliveries in order (JSON, signed), apart from the core task; a 2xx
//! answer delivers one,
//! anything else is tried again with the link's backoff (1 s doubling to 10 min, jittered), up to
//! [`MAX_ATTEMPTS`] times, then it is `failed`. What was tried is written back and flushed before the next turn,
//! so a restart neither loses a pending delivery nor forgets one delivered (a delivery in flight when the
//! controller stops is sent again: receivers see at least once, with `X-Bindwave-Delivery` to tell).

use std::time::Duration;

use tokio::sync::Notify;

use super::{signature, Deliveries, Delivery, DeliveryState, Webhooks};
use crate::clock::now_millis;

/// Attempts before a delivery is given up (about eight hours at the longest pause).
pub const MAX_ATTEMPTS: u32 = 50;
const TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF: bindwave_link::Backoff =
    bindwave_link::Backoff { first: Duration::from_secs(1), max: Duration::from_secs(600) };

/// Delivers what the queue holds until the task is stopped; `wake` is notified when new deliveries are durable.
pub async fn run(hooks: Webhooks, queue: Deliveries, wake: std::sync::Arc<Notify>) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => return tracing::error!("webhooks: cannot make an HTTP client: {}", crate::error_chain(&e)),
    };
    loop {
        let now = now_millis();
        let (due, next) = queue.due(now);
        let delivered = !due.is_empty();
        for d in due {
            let tried = attempt(&client, &hooks, d).await;
            if let Err(e) = queue.put(&tried) {
                tracing::error!("webhooks: cannot record delivery {}: {e}", tried.id);
            }
        }
        // A receiver that took one takes the next at once.
        let next = if delivered { Some(now) } else { next };
        if let Err(e) = queue.flush().await.and_then(|()| queue.prune()) {
            tracing::error!("webhooks: cannot write the delivery log: {e}");
        }
        let wait = next.map_or(Duration::from_secs(60), |n| Duration::from_millis(n.saturating_sub(now_millis())));
        tokio::select! {
            () = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
            () = wake.notified() => {}
        }
    }
}

async fn attempt(client: &reqwest::Client, hooks: &Webhooks, mut d: Delivery) -> Delivery {
    d.attempts += 1;
    let sent = client
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-bindwave-event", &d.event)
        .header("x-bindwave-delivery", d.id.to_string())
        .header("x-bindwave-signature", signature(&hooks.secret, d.body.as_bytes()))
        .body(d.body.clone())
        .send()
        .await;
    let now = now_millis();
    match sent {
        Ok(r) if r.status().is_success() => {
            d.state = DeliveryState::Delivered;
            d.delivered_at = Some(now);
            d.last_status = Some(r.status().as_u16());
            d.last_error = None;
            return d;
        }
        Ok(r) => {
            d.last_status = Some(r.status().as_u16());
            d.last_error = Some(format!("the receiver answered {}", r.status()));
        }
        Err(e) => {
            d.last_status = None;
            d.last_error = Some(crate::error_chain(&e));
        }
    }
    if d.attempts >= MAX_ATTEMPTS {
        d.state = DeliveryState::Failed;
        tracing::warn!(url = %d.url, event = %d.event, "webhook given up after {} attempts: {:?}", d.attempts, d.last_error);
    } else {
        d.next_at = now.saturating_add(BACKOFF.pause(d.attempts - 1).as_millis() as u64);
        tracing::info!(url = %d.url, event = %d.event, attempt = d.attempts, "webhook not delivered: {:?}; trying again", d.last_error);
    }
    d
}
