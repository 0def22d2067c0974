//! NATS-specific behaviour beyond the conformance suite: ordered queues fed by events
//! (sourcing per partition), layout and partition checks, unknown queues, cleanup, and
//! credentials kept out of connection errors.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::{Envelope, Error};
use tidings_nats::{NatsConfig, NatsTransport};

macro_rules! require_nats {
    () => {
        if let Some(why) = common::unreachable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

async fn transport(prefix: &str) -> NatsTransport {
    NatsTransport::connect(common::config(prefix))
        .await
        .unwrap()
}

fn ordered(name: &str, subscriptions: Vec<String>) -> QueueSpec {
    QueueSpec {
        name: name.into(),
        subscriptions,
        ordered: true,
        ..QueueSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_queue_gets_events_in_key_order() {
    require_nats!();
    let prefix = common::unique_prefix("ord_ev");
    let t = transport(&prefix).await;
    let plain = QueueSpec {
        name: "audit".into(),
        subscriptions: vec!["shop.order-placed".into()],
        ..QueueSpec::default()
    };
    let topo = Topology {
        queues: vec![ordered("billing", vec!["shop.order-placed".into()]), plain],
    };
    t.declare(&topo).await.unwrap();
    let mut sent = Vec::new();
    for i in 0..60u32 {
        let mut e = Envelope::new("shop.order-placed", 1, format!("{{\"i\":{i}}}"));
        e.partition_key = Some(format!("customer-{}", i % 6));
        e.headers.insert("i".into(), i.to_string());
        sent.push(Outgoing::publish(e));
    }
    t.send(sent).await.unwrap();

    let opts = ReceiveOptions {
        ordered: true,
        prefetch: 16,
        ..ReceiveOptions::default()
    };
    let mut rx = t.receive("billing", opts).await.unwrap();
    let mut last: HashMap<String, u32> = HashMap::new();
    for _ in 0..60 {
        let d = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("an event within 15 s")
            .unwrap()
            .unwrap();
        let key = d.envelope.partition_key.clone().unwrap();
        let i: u32 = d.envelope.header("i").unwrap().parse().unwrap();
        if let Some(prev) = last.insert(key.clone(), i) {
            assert!(prev < i, "key {key}: {i} after {prev}");
        }
        d.ack().await.unwrap();
    }
    assert_eq!(last.len(), 6);
    // The unordered subscriber got its own copies.
    let mut audit = t.receive("audit", ReceiveOptions::default()).await.unwrap();
    for _ in 0..60 {
        let d = tokio::time::timeout(Duration::from_secs(15), audit.recv())
            .await
            .expect("a copy within 15 s")
            .unwrap()
            .unwrap();
        d.ack().await.unwrap();
    }
    rx.close().await.unwrap();
    audit.close().await.unwrap();
    assert!(t.delete_all().await.unwrap() >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_partitions_and_unknown_queues_are_checked() {
    require_nats!();
    let prefix = common::unique_prefix("layout");
    let t = transport(&prefix).await;
    t.declare(&Topology {
        queues: vec![
            QueueSpec {
                name: "plain".into(),
                ..QueueSpec::default()
            },
            ordered("ord", vec![]),
        ],
    })
    .await
    .unwrap();
    // An unordered queue cannot be received (or re-declared) ordered.
    let opts = ReceiveOptions {
        ordered: true,
        ..ReceiveOptions::default()
    };
    assert!(matches!(
        t.receive("plain", opts).await.err(),
        Some(Error::Config(_))
    ));
    let again = Topology {
        queues: vec![ordered("plain", vec![])],
    };
    assert!(matches!(t.declare(&again).await, Err(Error::Config(_))));
    // Another partition count on the same prefix is refused.
    let mut cfg = common::config(&prefix);
    cfg.partitions = 3;
    let other = NatsTransport::connect(cfg).await.unwrap();
    let same = Topology {
        queues: vec![ordered("ord", vec![])],
    };
    assert!(matches!(other.declare(&same).await, Err(Error::Config(_))));
    // Sending to an undeclared queue fails; receiving from one too.
    let e = Envelope::new("x", 1, "{}");
    assert!(matches!(
        t.send(vec![Outgoing::to_queue("nowhere", e)]).await,
        Err(Error::UnknownQueue(q)) if q == "nowhere"
    ));
    assert!(matches!(
        t.receive("nowhere", ReceiveOptions::default()).await.err(),
        Some(Error::UnknownQueue(_))
    ));
    // Stats list both queues; cleanup removes every stream of the prefix.
    let stats = t.stats().await.unwrap();
    let names: Vec<_> = stats.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(names, ["ord", "plain"]);
    assert_eq!(stats[0].parked_keys, Some(0));
    t.delete_all().await.unwrap();
    let left: Vec<String> = t
        .client()
        .clone()
        .request("$JS.API.STREAM.NAMES", "".into())
        .await
        .map(|m| String::from_utf8_lossy(&m.payload).to_string())
        .into_iter()
        .collect();
    let marker = prefix.replace('_', "_5F");
    assert!(
        left.iter().all(|l| !l.contains(&marker)),
        "streams left: {left:?}"
    );
}

#[tokio::test]
async fn connection_errors_do_not_leak_credentials() {
    // Nothing listens on port 1: connecting fails, naming the server without the password.
    let cfg =
        NatsConfig::from_url("nats://alice:pa55word@127.0.0.1:1?request_timeout_ms=500").unwrap();
    let err = NatsTransport::connect(cfg).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("pa55word"), "{text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    let core: Error = err.into();
    assert!(core.is_retryable(), "a refused connection is transient");
}
