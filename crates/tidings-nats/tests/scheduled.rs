//! Scheduled messages must not hold a queue's pending slots while they wait: on an ordered
//! queue (one message in flight per partition) a message scheduled far ahead must not
//! block the ordinary messages behind it on its partition — whether it was sent to the
//! queue or published as an event the queue subscribes to — and must still arrive on time.

mod common;

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Receiver, Topology, Transport};
use tidings_core::Envelope;
use tidings_nats::NatsTransport;

macro_rules! require_nats {
    () => {
        if let Some(why) = common::unreachable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

const EVENT: &str = "sched.thing-happened";
const BEHIND: u32 = 20;

/// A transport with one partition, so every message of the ordered queue shares it.
async fn one_partition(prefix: &str) -> NatsTransport {
    let mut cfg = common::config(prefix);
    cfg.partitions = 1;
    NatsTransport::connect(cfg).await.unwrap()
}

fn keyed(ty: &str, i: u32) -> Envelope {
    let mut e = Envelope::new(ty, 1, format!("{{\"i\":{i}}}"));
    e.partition_key = Some("order-1".into());
    e.headers.insert("i".into(), i.to_string());
    e
}

async fn ordered_queue(t: &NatsTransport, name: &str) -> Box<dyn Receiver> {
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: name.into(),
            subscriptions: vec![EVENT.into()],
            ordered: true,
            ..QueueSpec::default()
        }],
    })
    .await
    .unwrap();
    let opts = ReceiveOptions {
        ordered: true,
        prefetch: 8,
        ..ReceiveOptions::default()
    };
    t.receive(name, opts).await.unwrap()
}

/// Receives `n` messages, acking each; panics unless all arrive by `deadline` and in order.
async fn receive_all_by(rx: &mut dyn Receiver, n: u32, deadline: Instant, what: &str) {
    for want in 1..=n {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = match tokio::time::timeout(left, rx.recv()).await {
            Ok(d) => d.unwrap().unwrap(),
            Err(_) => panic!(
                "{what}: only {} of {n} ordinary messages handled in time: the scheduled \
                 message holds the partition",
                want - 1
            ),
        };
        let i: u32 = d.envelope.header("i").unwrap().parse().unwrap();
        assert_eq!(i, want, "{what}: out of order");
        d.ack().await.unwrap();
    }
}

/// Waits for the scheduled message; checks it is not early and not much late.
async fn scheduled_arrives(rx: &mut dyn Receiver, at: chrono::DateTime<Utc>, what: &str) {
    let d = tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: the scheduled message never came"))
        .unwrap()
        .unwrap();
    let now = Utc::now();
    assert_eq!(d.envelope.header("i"), Some("0"), "{what}");
    assert!(now + TimeDelta::milliseconds(50) >= at, "{what}: early");
    assert!(
        now - at < TimeDelta::seconds(3),
        "{what}: late by {}",
        now - at
    );
    assert_eq!(
        d.envelope.scheduled_for,
        Some(at),
        "{what}: scheduled_for kept"
    );
    assert_eq!(d.delivery_count, 1, "{what}: delivery count");
    d.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_send_does_not_block_its_partition() {
    require_nats!();
    let prefix = common::unique_prefix("sched_q");
    let t = one_partition(&prefix).await;
    let mut rx = ordered_queue(&t, "saga").await;

    let mut far = keyed("sched.timeout", 0);
    far.scheduled_for = Some(Utc::now() + TimeDelta::seconds(20));
    t.send(vec![Outgoing::to_queue("saga", far)]).await.unwrap();
    // Let the receiver see the scheduled one first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for i in 1..=BEHIND {
        t.send(vec![Outgoing::to_queue("saga", keyed("sched.step", i))])
            .await
            .unwrap();
    }
    receive_all_by(&mut *rx, BEHIND, started + Duration::from_secs(2), "sent").await;
    // Acks are not confirmed: give the last one a moment to land.
    let mut s = t.stats().await.unwrap();
    for _ in 0..20 {
        if s[0].in_flight == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = t.stats().await.unwrap();
    }
    assert_eq!(
        s[0].scheduled,
        Some(1),
        "waiting in the delay stream: {s:?}"
    );
    assert_eq!(
        s[0].in_flight,
        Some(0),
        "nothing pending on the queue: {s:?}"
    );

    // A near one on the same partition arrives on time.
    let at = Utc::now() + TimeDelta::milliseconds(1500);
    let mut near = keyed("sched.timeout", 0);
    near.scheduled_for = Some(at);
    t.send(vec![Outgoing::to_queue("saga", near)])
        .await
        .unwrap();
    scheduled_arrives(&mut *rx, at, "sent, 1.5 s ahead").await;

    rx.close().await.unwrap();
    t.delete_queue("saga").await.unwrap();
    t.delete_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_event_does_not_block_its_partition() {
    require_nats!();
    let prefix = common::unique_prefix("sched_ev");
    let t = one_partition(&prefix).await;
    let mut rx = ordered_queue(&t, "payments").await;

    let at = Utc::now() + TimeDelta::seconds(4);
    let mut later = keyed(EVENT, 0);
    later.scheduled_for = Some(at);
    t.send(vec![Outgoing::publish(later)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for i in 1..=BEHIND {
        t.send(vec![Outgoing::publish(keyed(EVENT, i))])
            .await
            .unwrap();
    }
    receive_all_by(
        &mut *rx,
        BEHIND,
        started + Duration::from_secs(2),
        "published",
    )
    .await;
    scheduled_arrives(&mut *rx, at, "published, 4 s ahead").await;

    rx.close().await.unwrap();
    t.delete_all().await.unwrap();
}
