//! The dead-letter monitor: thresholds, repeat suppression, published alert event.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use tidings_admin::{DeadLetterAlert, DeadLetterMonitor, MonitorConfig};
use tidings_core::transport::{QueueSpec, ReceiveOptions, Topology};
use tidings_core::{FaultReason, Message, Producer};

#[tokio::test]
async fn alerts_once_per_crossing_and_publishes() {
    let t = common::transport().await;
    // An operations queue subscribed to alerts.
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "ops".into(),
            subscriptions: vec![DeadLetterAlert::NAME.into()],
            ..Default::default()
        }],
    })
    .await
    .unwrap();
    let producer = Producer::new(t.clone(), HashMap::new(), Some("admin".into()));
    let cfg = MonitorConfig {
        max_error_depth: 1,
        max_oldest_age: Duration::from_secs(3600),
        repeat_after: Duration::from_secs(3600),
        ..Default::default()
    };
    let mut m = DeadLetterMonitor::new(t.clone(), cfg).producer(producer);
    common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "c",
    )
    .await;
    assert!(m.check().await.unwrap().is_empty(), "1 is not over 1");
    common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "c",
    )
    .await;
    let alerts = m.check().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].queue, "orders");
    assert_eq!(alerts[0].error_depth, 2);
    assert!(
        alerts[0].exceeded[0].contains("error depth 2 > 1"),
        "{:?}",
        alerts[0]
    );
    assert!(alerts[0].oldest_age_seconds.is_some());
    // Still over: not repeated before repeat_after.
    assert!(m.check().await.unwrap().is_empty());

    let mut rx = t.receive("ops", ReceiveOptions::default()).await.unwrap();
    let d = rx.recv().await.unwrap().unwrap();
    assert_eq!(d.envelope.message_type, "tidings.dead-letter-alert");
    let alert: DeadLetterAlert = serde_json::from_slice(&d.envelope.body).unwrap();
    assert_eq!(alert, alerts[0]);
    d.ack().await.unwrap();

    // Cleared, then over again: alerts again.
    t.purge(&Default::default()).await.unwrap();
    assert!(m.check().await.unwrap().is_empty());
    for _ in 0..2 {
        common::dead_letter(&t, "orders", "shop.reserve", FaultReason::Panicked, "c").await;
    }
    assert_eq!(m.check().await.unwrap().len(), 1);
}

#[tokio::test]
async fn age_threshold() {
    let t = common::transport().await;
    common::dead_letter(&t, "payments", "shop.charge", FaultReason::TimedOut, "c").await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cfg = MonitorConfig {
        max_error_depth: 100,
        max_oldest_age: Duration::from_millis(10),
        ..Default::default()
    };
    let alerts = DeadLetterMonitor::new(t, cfg).check().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].exceeded[0].starts_with("oldest dead letter"),
        "{:?}",
        alerts[0]
    );
}
