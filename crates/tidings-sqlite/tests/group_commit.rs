//! Group commit: concurrent sends from many tasks share transactions (fewer commits than
//! operations), and every message arrives once.

use std::collections::HashSet;
use std::sync::Arc;

use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_sqlite::{SqliteConfig, SqliteTransport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_batched_and_all_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let t = SqliteTransport::connect(SqliteConfig::new(dir.path().join("g.db")))
        .await
        .unwrap();
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "q".into(),
            ..Default::default()
        }],
    })
    .await
    .unwrap();
    let before = t.writer_stats();
    let t = Arc::new(t);
    let (tasks, per_task) = (64, 20);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let env = Envelope::new("t.m", 1, format!("{}", task * 1000 + i));
                t.send(vec![Outgoing::to_queue("q", env)]).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let after = t.writer_stats();
    let ops = after.operations - before.operations;
    let commits = after.commits - before.commits;
    assert_eq!(ops, (tasks * per_task) as u64);
    assert!(
        commits < ops,
        "group commit should batch concurrent sends: {commits} commits for {ops} sends"
    );
    eprintln!("{ops} sends in {commits} commits");

    let mut rx = t
        .receive(
            "q",
            ReceiveOptions {
                prefetch: 64,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut seen = HashSet::new();
    while seen.len() < tasks * per_task {
        let d = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("all delivered")
            .unwrap()
            .unwrap();
        assert!(seen.insert(d.envelope.body.clone()), "duplicate");
        d.ack().await.unwrap();
    }
    let stats = t.stats().await.unwrap();
    assert_eq!(stats[0].ready + stats[0].in_flight.unwrap(), 0, "{stats:?}");
}

/// A lone ack waits (up to `ack_delay`) for another operation and shares its commit: the
/// ack is answered only after the commit that also carries the next send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_ack_shares_the_next_sends_commit() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let t = SqliteTransport::connect(
        SqliteConfig::new(dir.path().join("a.db")).ack_delay(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: "q".into(),
            ..Default::default()
        }],
    })
    .await
    .unwrap();
    t.send(vec![Outgoing::to_queue("q", Envelope::new("t.m", 1, "1"))])
        .await
        .unwrap();
    let mut rx = t.receive("q", ReceiveOptions::default()).await.unwrap();
    let d = rx.recv().await.unwrap().unwrap();
    let t = Arc::new(t);
    let ack = tokio::spawn(async move { d.ack().await });
    // Nothing else is queued: the ack's batch waits for company (30 s at most).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ack.is_finished(), "a lone ack was committed at once");
    t.send(vec![Outgoing::to_queue("q", Envelope::new("t.m", 1, "2"))])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), ack)
        .await
        .expect("the ack is answered with the send's commit")
        .unwrap()
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the second message arrives")
        .unwrap()
        .unwrap();
    assert_eq!(&d.envelope.body[..], b"2");
}
