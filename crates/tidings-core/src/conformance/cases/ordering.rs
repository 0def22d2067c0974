//! Ordered queues: one message in flight per partition key, and parking a key behind a
//! dead letter until it is replayed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::support::*;
use super::super::TransportFactory;
use crate::envelope::headers;
use crate::transport::{Outgoing, QueueSpec, ReceiveOptions};
use crate::{Envelope, FaultReason};

const KEYS: u64 = 20;
const PER_KEY: u64 = 25;

/// Per key: whether a handler is running and the next sequence number expected.
#[derive(Default)]
struct KeyState {
    busy: bool,
    next: u64,
}

fn ordered_options(prefetch: usize) -> ReceiveOptions {
    ReceiveOptions {
        prefetch,
        lease: Duration::from_secs(30),
        ordered: true,
        park_on_dead_letter: false,
    }
}

fn keyed(message_type: &str, key: &str, seq: u64) -> Envelope {
    let mut e = message(message_type, seq);
    e.partition_key = Some(key.to_string());
    e
}

/// Handles one delivery of the per-key test: checks order and exclusivity, sleeps a
/// little, acks; reports the result.
async fn handle_in_order(
    d: crate::transport::Delivery,
    state: Arc<Mutex<HashMap<String, KeyState>>>,
    reports: Reports<()>,
) {
    let key = d.envelope.partition_key.clone().unwrap_or_default();
    let s = seq(&d.envelope);
    let violation = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let k = st.entry(key.clone()).or_default();
        if k.busy {
            Some(format!(
                "key {key}: seq {s} delivered while another of the key is being handled"
            ))
        } else if k.next != s {
            Some(format!(
                "key {key}: expected seq {} next, got {s} (delivery_count {})",
                k.next, d.delivery_count
            ))
        } else {
            k.busy = true;
            None
        }
    };
    if let Some(v) = violation {
        let _ = reports.send(Err(v));
        return;
    }
    let pause = rand::random_range(0..4u64);
    tokio::time::sleep(Duration::from_millis(pause)).await;
    {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let k = st.entry(key.clone()).or_default();
        k.busy = false;
        k.next += 1;
    }
    let r = d
        .ack()
        .await
        .map_err(|e| format!("key {key}: ack of seq {s} failed: {e}"));
    let _ = reports.send(r);
}

/// 20 keys x 25 messages, sent interleaved, handled by up to 16 concurrent handlers on two
/// receivers: per key, handled in send order and never two at once.
pub async fn per_key_order_under_concurrency(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = queue_name("ordered");
    declare(
        &*t,
        vec![QueueSpec {
            ordered: true,
            ..spec(&q)
        }],
    )
    .await;
    let ty = type_name("ordered");
    let mut batch = Vec::new();
    for s in 0..PER_KEY {
        for k in 0..KEYS {
            batch.push(Outgoing::to_queue(&q, keyed(&ty, &format!("key-{k}"), s)));
            if batch.len() == 100 {
                send(&*t, std::mem::take(&mut batch)).await;
            }
        }
    }
    if !batch.is_empty() {
        send(&*t, batch).await;
    }

    let state = Arc::new(Mutex::new(HashMap::<String, KeyState>::new()));
    let stop = CancellationToken::new();
    let (tx, mut reports) = mpsc::unbounded_channel();
    let t2 = connect(factory).await;
    let mut tasks = Vec::new();
    for (i, conn) in [&t, &t2].into_iter().enumerate() {
        let rx = open(&**conn, &q, ordered_options(8)).await;
        let (state, tx2) = (state.clone(), tx.clone());
        tasks.push(spawn_consumer(
            rx,
            format!("receiver {i}"),
            stop.clone(),
            tx.clone(),
            move |d| {
                tokio::spawn(handle_in_order(d, state.clone(), tx2.clone()));
                std::future::ready(())
            },
        ));
    }
    drop(tx);
    let total = (KEYS * PER_KEY) as usize;
    collect(
        &mut reports,
        total,
        Duration::from_secs(120),
        "per-key order",
    )
    .await;
    // Nothing more may arrive (no duplicates).
    match tokio::time::timeout(QUIET, reports.recv()).await {
        Err(_) | Ok(None) => {}
        Ok(Some(Ok(()))) => panic!("per-key order: a message was handled twice"),
        Ok(Some(Err(v))) => panic!("per-key order: {v}"),
    }
    stop_all(&stop, tasks).await;
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(st.len() as u64, KEYS, "every key handled");
    assert!(st.values().all(|k| k.next == PER_KEY && !k.busy));
}

/// On an ordered queue with `park_on_dead_letter`, dead-lettering key K's message parks K:
/// later K messages wait while other keys flow; replay unparks K and order holds.
pub async fn parked_key_waits_for_replay(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = queue_name("parked");
    declare(
        &*t,
        vec![QueueSpec {
            ordered: true,
            ..spec(&q)
        }],
    )
    .await;
    let ty = type_name("parked");
    let k = |s| keyed(&ty, "key-k", s);
    let o = |s| keyed(&ty, "key-o", s);
    let (k1, k2, k3) = (k(1), k(2), k(3));
    let (o1, o2) = (o(101), o(102));
    let opts = ReceiveOptions {
        park_on_dead_letter: true,
        ..ordered_options(16)
    };
    let mut rx = open(&*t, &q, opts).await;
    send(
        &*t,
        vec![
            Outgoing::to_queue(&q, k1.clone()),
            Outgoing::to_queue(&q, k2.clone()),
        ],
    )
    .await;
    let d = recv(&mut *rx, "the first message of key K").await;
    assert_eq!(
        d.envelope.id, k1.id,
        "key K's first message comes first (ordered)"
    );
    dead_letter(d, FaultReason::HandlerFailed, "poison").await;
    send(
        &*t,
        vec![
            Outgoing::to_queue(&q, o1.clone()),
            Outgoing::to_queue(&q, k3.clone()),
            Outgoing::to_queue(&q, o2.clone()),
        ],
    )
    .await;
    for want in [&o1, &o2] {
        let d = recv(&mut *rx, "messages of another key while K is parked").await;
        assert_eq!(
            d.envelope.id,
            want.id,
            "expected key O seq {} (key K is parked), got seq {} of key {:?}",
            seq(want),
            seq(&d.envelope),
            d.envelope.partition_key
        );
        ack(d, "a key O message").await;
    }
    expect_nothing(&mut *rx, QUIET, "key K is parked behind its dead letter").await;
    let s = queue_stats(&*t, &q).await;
    if let Some(parked) = s.parked_keys {
        assert_eq!(parked, 1, "parked_keys: {s:?}");
    }
    dead_letters_until(&*t, &of_queue(&q), 1).await;

    let n = must(t.replay(&of_queue(&q), None).await, "replay");
    assert_eq!(n, 1);
    for want in [&k1, &k2, &k3] {
        let d = recv(&mut *rx, "key K after replay").await;
        assert_eq!(
            d.envelope.id,
            want.id,
            "after replay key K must resume in order: expected seq {}, got seq {}",
            seq(want),
            seq(&d.envelope)
        );
        if d.envelope.id == k1.id {
            assert!(d.envelope.header(headers::REPLAYED).is_some());
        }
        ack(d, "a key K message").await;
    }
    expect_nothing(&mut *rx, QUIET, "everything was handled").await;
    let s = queue_stats(&*t, &q).await;
    if let Some(parked) = s.parked_keys {
        assert_eq!(parked, 0, "parked_keys after replay: {s:?}");
    }
}

/// On an ordered queue, a message of key A nacked with a delay holds back the later
/// messages of A (they must not overtake it) but not those of other keys.
pub async fn ordered_delay_holds_back_only_its_key(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = queue_name("ordered_delay");
    declare(
        &*t,
        vec![QueueSpec {
            ordered: true,
            ..spec(&q)
        }],
    )
    .await;
    let ty = type_name("ordered-delay");
    let (a1, a2, b1) = (
        keyed(&ty, "key-a", 1),
        keyed(&ty, "key-a", 2),
        keyed(&ty, "key-b", 1),
    );
    send(
        &*t,
        [&a1, &a2, &b1]
            .into_iter()
            .map(|m| Outgoing::to_queue(&q, m.clone()))
            .collect(),
    )
    .await;
    let mut rx = open(&*t, &q, ordered_options(16)).await;
    let mut b_done = false;
    loop {
        let d = recv(&mut *rx, "key A's first message").await;
        if d.envelope.id == b1.id && !b_done {
            b_done = true;
            ack(d, "key B's message").await;
            continue;
        }
        assert_eq!(
            d.envelope.id, a1.id,
            "key A's first message must come before A2"
        );
        must(d.nack(Duration::from_secs(2)).await, "nack(2 s)");
        break;
    }
    if !b_done {
        let d = recv(&mut *rx, "key B's message while A1 waits out its delay").await;
        assert_eq!(
            d.envelope.id, b1.id,
            "while A1 waits out its 2 s delay, key B must flow and A2 must wait; got seq {} of {:?}",
            seq(&d.envelope),
            d.envelope.partition_key
        );
        ack(d, "key B's message").await;
    }
    for want in [&a1, &a2] {
        let d = recv(&mut *rx, "key A after the delay").await;
        assert_eq!(
            d.envelope.id,
            want.id,
            "key A must stay in order across a delayed redelivery: expected seq {}, got {}",
            seq(want),
            seq(&d.envelope)
        );
        ack(d, "a key A message").await;
    }
    expect_nothing(&mut *rx, QUIET, "everything was handled").await;
}
