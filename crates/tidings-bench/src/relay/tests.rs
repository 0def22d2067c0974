//! The relay scenario's measuring and checking code on the in-memory transport (the broker
//! runs are in `tests/relay.rs`): a SQLite outbox shipped by a real relay passes the
//! checks, and the checks catch a doubled and a missing message.

use std::sync::Arc;

use tidings::transport::memory::MemoryTransport;
use tidings::transport::{QueueSpec, Topology, Transport};

use super::check;
use super::outbox::{work, Outbox, StoreKind};
use super::runs::ship;

async fn memory_queue(queue: &str) -> Arc<dyn Transport> {
    let t: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: queue.into(),
            ..QueueSpec::default()
        }],
    })
    .await
    .unwrap();
    t
}

async fn send_seqs(t: &dyn Transport, queue: &str, seqs: &[u64]) {
    let msgs = seqs
        .iter()
        .map(|&seq| work(queue, seq, "").unwrap())
        .collect();
    t.send(msgs).await.unwrap();
}

#[tokio::test]
async fn a_sqlite_outbox_is_shipped_whole_and_passes_the_checks() {
    let t = memory_queue("dest").await;
    let outbox = Outbox::open(StoreKind::Sqlite, "").await.unwrap();
    let n = 1_234; // not a multiple of the batch: a short last batch
    assert!(outbox.fill("dest", n, 256).await.unwrap() > 0.0);
    assert_eq!(outbox.store().pending().await.unwrap(), n);
    let elapsed = ship(outbox.store(), t.clone(), n, 100).await.unwrap();
    assert!(elapsed.as_secs_f64() > 0.0);
    assert_eq!(outbox.store().pending().await.unwrap(), 0);
    check::count(t.as_ref(), "dest", n).await.unwrap();
    check::drain(&t, "dest", n, 64).await.unwrap();
    outbox.remove().await.unwrap();
}

#[tokio::test]
async fn the_checks_catch_a_doubled_message() {
    let t = memory_queue("dest").await;
    send_seqs(t.as_ref(), "dest", &[0, 1, 1]).await;
    let e = check::count(t.as_ref(), "dest", 2).await.unwrap_err();
    assert!(e.to_string().contains("shipped twice"), "{e}");
    // Three messages for three rows, but seq 1 twice and seq 2 never.
    check::count(t.as_ref(), "dest", 3).await.unwrap();
    let e = check::drain(&t, "dest", 3, 8).await.unwrap_err();
    assert!(e.to_string().contains("seq 1 delivered twice"), "{e}");
}

#[tokio::test]
async fn the_checks_catch_a_missing_message() {
    let t = memory_queue("dest").await;
    send_seqs(t.as_ref(), "dest", &[0, 1]).await;
    let e = check::count(t.as_ref(), "dest", 3).await.unwrap_err();
    assert!(e.to_string().contains("holds 2 of 3"), "{e}");
}
