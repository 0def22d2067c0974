//! Fault test: the server terminates this test's connections (`pg_terminate_backend` by
//! application_name) over and over while a producer and two consumers run. Both recover;
//! nothing is lost; every message is acked exactly once (redeliveries may happen).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;
use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_postgres::PostgresTransport;

const MESSAGES: usize = 2000;

#[derive(Default)]
struct Seen {
    deliveries: HashMap<uuid::Uuid, u32>,
    acks: HashMap<uuid::Uuid, u32>,
    ack_errors: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_server_side_connection_kills() {
    if !common::available() {
        return;
    }
    let schema = common::schema("fault");
    let app = format!("tidings-test-{schema}");
    let t = PostgresTransport::connect(common::config(&schema))
        .await
        .unwrap();
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "work".into(),
            ..QueueSpec::default()
        }],
    })
    .await
    .unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let send_retries = Arc::new(AtomicU64::new(0));

    // Killer: a separate connection (another application_name) terminating ours.
    let killer = {
        let (stop, kills, app) = (stop.clone(), kills.clone(), app.clone());
        tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&common::url()).await.unwrap();
            while !stop.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = $1",
                )
                .bind(&app)
                .fetch_one(&mut conn)
                .await
                .unwrap();
                kills.fetch_add(n as u64, Ordering::Relaxed);
            }
        })
    };

    // Producer: batches of 10; a failed send is retried with the same envelopes (the
    // insert is idempotent per (queue, id), so an ambiguous failure does not duplicate).
    let producer = {
        let (t, send_retries) = (t.clone(), send_retries.clone());
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(MESSAGES);
            for chunk in 0..MESSAGES / 10 {
                let batch: Vec<Outgoing> = (0..10)
                    .map(|i| {
                        let body = format!("{{\"n\":{}}}", chunk * 10 + i);
                        Outgoing::to_queue("work", Envelope::new("test.work", 1, body))
                    })
                    .collect();
                ids.extend(batch.iter().map(|o| o.envelope.id));
                loop {
                    match t.send(batch.clone()).await {
                        Ok(()) => break,
                        Err(e) if e.is_retryable() => {
                            send_retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("permanent send error: {e}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ids
        })
    };

    // Two consumers; a claim lost with its connection comes back after the 3 s lease.
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let (t, seen, stop) = (t.clone(), seen.clone(), stop.clone());
        consumers.push(tokio::spawn(async move {
            let opts = ReceiveOptions {
                prefetch: 16,
                lease: Duration::from_secs(3),
                ..ReceiveOptions::default()
            };
            let mut rx = t.receive("work", opts).await.unwrap();
            while !stop.load(Ordering::Acquire) {
                let next = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
                let Ok(next) = next else { continue };
                let d = next
                    .expect("receiver recovers from transient errors")
                    .unwrap();
                let id = d.envelope.id;
                *seen.lock().unwrap().deliveries.entry(id).or_default() += 1;
                match d.ack().await {
                    Ok(()) => *seen.lock().unwrap().acks.entry(id).or_default() += 1,
                    Err(_) => seen.lock().unwrap().ack_errors += 1,
                }
            }
            rx.close().await.unwrap();
        }));
    }

    let ids = producer.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let acked = seen.lock().unwrap().acks.len();
        if acked >= MESSAGES || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Release);
    killer.await.unwrap();
    for c in consumers {
        c.await.unwrap();
    }

    let s = std::mem::take(&mut *seen.lock().unwrap());
    let redelivered = s.deliveries.values().filter(|n| **n > 1).count();
    eprintln!(
        "fault: {} connections killed, {} send retries, {} redelivered, {} ack errors",
        kills.load(Ordering::Relaxed),
        send_retries.load(Ordering::Relaxed),
        redelivered,
        s.ack_errors
    );
    assert!(
        kills.load(Ordering::Relaxed) >= 5,
        "the test must actually cut connections"
    );
    for id in &ids {
        assert!(s.deliveries.get(id).is_some_and(|n| *n >= 1), "lost {id}");
        assert_eq!(
            s.acks.get(id).copied(),
            Some(1),
            "{id} not acked exactly once"
        );
    }
    assert_eq!(s.deliveries.len(), MESSAGES, "no unknown messages");
    let stats = t.stats().await.unwrap();
    assert_eq!(stats[0].ready + stats[0].in_flight.unwrap(), 0, "{stats:?}");
    common::drop_schema(&t).await;
}
