//! The MQTT link's backpressure, through a real broker (Mosquitto): an owner that stops reading makes the
//! link stop reading from the broker, which holds the messages; when the owner reads again, every one arrives,
//! in order, and the link never held more than its bound.

use std::time::Duration;

use bindwave_link::{connect, LinkEvent, LinkOptions};
use bindwave_tests::{send_command, Mosquitto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_falls_behind_slows_the_link_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let mut opts = LinkOptions::new(&broker.url, "slow-owner");
    opts.event_capacity = 4;
    let mut link = connect(opts).unwrap();
    let topic = "bindwave/v1/devices/slow/commands";
    loop {
        match tokio::time::timeout(Duration::from_secs(10), link.events.recv()).await.unwrap() {
            Some(LinkEvent::Connected) => break,
            Some(_) => continue,
            None => panic!("the link ended"),
        }
    }
    link.client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 300 messages while the owner reads nothing (under the broker's queue of 1,000 for the client).
    const N: usize = 300;
    let url = broker.url.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..N {
            send_command(&url, "slow", &format!("publisher-{i}"), &format!("{{\"n\":{i}}}"));
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The link filled its bound and then waited: the rest is with the broker, not in this process.
    assert_eq!(link.events.len(), 4, "the link holds its bound, no more");

    let mut seen = Vec::new();
    while seen.len() < N {
        match tokio::time::timeout(Duration::from_secs(20), link.events.recv()).await {
            Ok(Some(LinkEvent::Message { payload, .. })) => {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                seen.push(v["n"].as_u64().unwrap() as usize);
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the link ended"),
            Err(_) => panic!("only {} of {N} messages arrived", seen.len()),
        }
    }
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "every message, in order");
    link.task.abort();
}

/// Waits for the link's next `Connected`, skipping the rest.
async fn connected(link: &mut bindwave_link::Link) {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), link.events.recv()).await {
            Ok(Some(LinkEvent::Connected)) => return,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the link ended"),
            Err(_) => panic!("the link did not connect within 20 s"),
        }
    }
}

/// Subscribes to `topic`, has a command sent through `broker`, and waits for it on the link.
async fn hears_through(link: &mut bindwave_link::Link, broker: &str, n: u64) {
    let topic = "bindwave/v1/devices/failover/commands";
    link.client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
    let (url, deadline) = (broker.to_string(), tokio::time::Instant::now() + Duration::from_secs(20));
    loop {
        // Sent until it is heard: the subscription may not be in place at the first send.
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            send_command(&url, "failover", &format!("sender-{n}"), &format!("{{\"n\":{n}}}"))
        })
        .await
        .unwrap();
        while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(500), link.events.recv()).await {
            if let LinkEvent::Message { payload, .. } = event {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                if v["n"] == n {
                    return;
                }
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no message {n} through {broker} within 20 s");
    }
}

/// A link with fallback brokers starts on the first that answers, and when its broker dies it goes on to the
/// next one, where it subscribes again and hears what is sent there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_fails_over_to_the_next_broker_in_its_list() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let mut a = Mosquitto::start(&a_dir);
    let b = Mosquitto::start(&b_dir);
    // Nothing listens on the first URL.
    let nobody = format!("mqtt://127.0.0.1:{}", bindwave_tests::free_port());
    let mut opts = LinkOptions::new(&nobody, "failover");
    opts.fallback_urls = vec![a.url.clone(), b.url.clone()];
    let mut link = connect(opts).unwrap();
    connected(&mut link).await;
    hears_through(&mut link, &a.url, 1).await;

    a.proc.kill();
    connected(&mut link).await;
    hears_through(&mut link, &b.url, 2).await;
    link.task.abort();
}

/// With manual acknowledgement, a message the owner never acknowledged (the process died first) comes again
/// when the session resumes, and one it acknowledged does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_not_acknowledged_is_delivered_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path());
    let topic = "bindwave/v1/devices/acker/commands";
    let start = || {
        let mut opts = LinkOptions::new(&broker.url, "acker");
        opts.manual_acks = true;
        connect(opts).unwrap()
    };
    let send = |n: u64| {
        let url = broker.url.clone();
        tokio::task::spawn_blocking(move || {
            send_command(&url, "acker", &format!("sender-{n}"), &format!("{{\"n\":{n}}}"))
        })
    };

    let mut link = start();
    connected(&mut link).await;
    link.client.subscribe(topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(1).await.unwrap();
    let (n, _never_acked) = next_message(&mut link.events, Duration::from_secs(10)).await.expect("message 1");
    assert_eq!(n, 1);
    // The process dies before it acknowledges: the same session comes back and hears it again.
    link.task.abort();
    drop(link);
    let mut link = start();
    let (n, delivery) = next_message(&mut link.events, Duration::from_secs(10)).await.expect("message 1 again");
    assert_eq!(n, 1, "the unacknowledged message, delivered again");
    delivery.ack(&link.client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    link.task.abort();
    drop(link);
    // Acknowledged, it is gone: the next session hears only what is new.
    let mut link = start();
    connected(&mut link).await;
    send(2).await.unwrap();
    let (n, delivery) = next_message(&mut link.events, Duration::from_secs(10)).await.expect("message 2");
    assert_eq!(n, 2, "message 1 was acknowledged and is not delivered again");
    delivery.ack(&link.client);
    link.task.abort();
}

/// The next message's number and its delivery, or `None` when nothing came within `wait`.
async fn next_message(
    events: &mut tokio::sync::mpsc::Receiver<LinkEvent>,
    wait: Duration,
) -> Option<(u64, bindwave_link::Delivery)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(LinkEvent::Message { payload, delivery, .. })) => {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                return Some((v["n"].as_u64().unwrap(), delivery.expect("a delivery to acknowledge")));
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the link ended"),
            Err(_) => return None,
        }
    }
}
