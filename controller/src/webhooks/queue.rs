//! The webhook queue: a sled tree (`webhooks`) of the store's database, one record per delivery (a notification
//! to one URL), keyed by its number. The core writes new deliveries in the batch of the audit entries they come
//! from, so the store's flush makes both durable together; the deliverer updates them as it tries. The last
//! [`KEEP`] deliveries are kept for `bindwave webhook deliveries`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::Notification;
use crate::model::Millis;
use crate::ControllerError;

/// Deliveries kept (pending ones always are).
pub const KEEP: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Given up after every attempt failed.
    Failed,
}

/// One notification to one URL, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: u64,
    pub url: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// The JSON body, exactly as signed and sent.
    pub body: String,
    pub created_at: Millis,
    pub state: DeliveryState,
    pub attempts: u32,
    /// When it is tried next, while pending.
    pub next_at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Millis>,
}

/// The queue.
#[derive(Clone)]
pub struct Deliveries {
    tree: sled::Tree,
    next: std::sync::Arc<AtomicU64>,
}

impl Deliveries {
    pub fn new(tree: sled::Tree) -> Result<Deliveries, ControllerError> {
        let last = tree.last()?.map_or(0, |(k, _)| key_id(&k));
        Ok(Deliveries { tree, next: std::sync::Arc::new(AtomicU64::new(last + 1)) })
    }

    /// Queues `notification` for each of `urls` (not flushed: the store's flush makes it durable).
    pub fn enqueue(&self, urls: &[String], notification: &Notification, now: Millis) -> Result<(), ControllerError> {
        let body = serde_json::to_string(notification)
            .map_err(|e| ControllerError::StoreEncode { key: "webhook".into(), detail: e.to_string() })?;
        for url in urls {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            let d = Delivery {
                id,
                url: url.clone(),
                event: notification.event.clone(),
                rollout: notification.rollout.clone(),
                body: body.clone(),
                created_at: now,
                state: DeliveryState::Pending,
                attempts: 0,
                next_at: now,
                last_status: None,
                last_error: None,
                delivered_at: None,
            };
            self.put(&d)?;
        }
        Ok(())
    }

    pub fn put(&self, d: &Delivery) -> Result<(), ControllerError> {
        let value = serde_json::to_vec(d)
            .map_err(|e| ControllerError::StoreEncode { key: format!("webhook {}", d.id), detail: e.to_string() })?;
        self.tree.insert(d.id.to_be_bytes(), value)?;
        Ok(())
    }

    /// Makes the deliverer's updates durable.
    pub async fn flush(&self) -> Result<(), ControllerError> {
        self.tree.flush_async().await?;
        Ok(())
    }

    /// Every delivery, oldest first (a damaged record is skipped: it is a log, not state).
    fn all(&self) -> impl Iterator<Item = Delivery> + '_ {
        self.tree.iter().values().filter_map(|v| v.ok().and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The oldest pending delivery of each URL, if due at `now` (a receiver hears events in the order they
    /// happened: a later one waits for the one before it), and when the next one not yet due is.
    pub fn due(&self, now: Millis) -> (Vec<Delivery>, Option<Millis>) {
        let (mut due, mut next) = (Vec::new(), None::<Millis>);
        let mut seen = std::collections::BTreeSet::new();
        for d in self.all().filter(|d| d.state == DeliveryState::Pending) {
            if !seen.insert(d.url.clone()) {
                continue;
            }
            if d.next_at <= now {
                due.push(d);
            } else {
                next = Some(next.map_or(d.next_at, |n| n.min(d.next_at)));
            }
        }
        (due, next)
    }

    /// The newest `limit` deliveries, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Delivery> {
        self.tree
            .iter()
            .rev()
            .filter_map(|kv| kv.ok().and_then(|(_, v)| serde_json::from_slice(&v).ok()))
            .take(limit)
            .collect()
    }

    /// Forgets finished deliveries beyond the newest [`KEEP`].
    pub fn prune(&self) -> Result<(), ControllerError> {
        let over = self.tree.len().saturating_sub(KEEP);
        let old: Vec<u64> = self.all().filter(|d| d.state != DeliveryState::Pending).take(over).map(|d| d.id).collect();
        for id in old {
            self.tree.remove(id.to_be_bytes())?;
        }
        Ok(())
    }
}

fn key_id(k: &[u8]) -> u64 {
    <[u8; 8]>::try_from(k).map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(event: &str) -> Notification {
        Notification {
            event: event.into(),
            at: 1,
            audit_seq: 1,
            actor: "a".into(),
            reason: "r".into(),
            rollout: Some("r1".into()),
            state: None,
        }
    }

    /// Each receiver gets its events in order: a later one waits until the one before it is delivered or given
    /// up; receivers do not wait for each other.
    #[test]
    fn each_url_is_served_oldest_first_and_alone() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let q = Deliveries::new(db.open_tree("webhooks").unwrap()).unwrap();
        let urls = ["http://a".to_string(), "http://b".to_string()];
        q.enqueue(&urls, &note("one"), 10).unwrap();
        q.enqueue(&urls, &note("two"), 20).unwrap();
        let (due, _) = q.due(100);
        let got: Vec<(&str, &str)> = due.iter().map(|d| (d.url.as_str(), d.event.as_str())).collect();
        assert_eq!(got, [("http://a", "one"), ("http://b", "one")]);
        let mut a = due[0].clone();
        a.next_at = 500;
        q.put(&a).unwrap();
        let (due, next) = q.due(100);
        assert_eq!(due.len(), 1, "a waits for its retry, and its `two` behind it");
        assert_eq!(next, Some(500));
        a.state = DeliveryState::Delivered;
        q.put(&a).unwrap();
        let (due, _) = q.due(100);
        let got: Vec<(&str, &str)> = due.iter().map(|d| (d.url.as_str(), d.event.as_str())).collect();
        assert_eq!(got, [("http://b", "one"), ("http://a", "two")]);
        assert_eq!(q.recent(1)[0].event, "two", "newest first");
        // A queue reopened numbers on from its last delivery.
        let again = Deliveries::new(db.open_tree("webhooks").unwrap()).unwrap();
        again.enqueue(&urls[..1], &note("three"), 30).unwrap();
        assert_eq!(again.recent(1)[0].id, 5);
    }
}
