//! Poison messages: bytes that are not a Tidings envelope, put into a queue through the
//! transport's native path ([`TransportFactory::inject_raw`]), are dead-lettered by the
//! receiver with reason `undecodable` and their raw bytes, within a lease; they are never
//! delivered, never come back, and on an ordered queue their key is released or parked
//! per the receiver's `park_on_dead_letter`, never stuck.

use std::time::Duration;

use super::super::support::*;
use super::super::TransportFactory;
use crate::envelope::headers;
use crate::transport::undecodable::UNDECODABLE_CONTENT_TYPE;
use crate::transport::{DeadLetter, DeadLetterQuery, QueueSpec, ReceiveOptions, Transport};
use crate::Envelope;

/// The lease the cases receive with: the dead letter must show up within it.
const LEASE: Duration = WAIT;

/// Bytes no transport can take for an envelope (invalid UTF-8, not JSON), unique per case.
fn poison_bytes() -> Vec<u8> {
    let mut raw = vec![0xff, 0xfe, 0x00, b'{'];
    raw.extend_from_slice(uuid::Uuid::new_v4().simple().to_string().as_bytes());
    raw
}

/// Injects `raw`; `false` (after printing why) if the factory cannot.
async fn inject(
    factory: &impl TransportFactory,
    queue: &str,
    raw: &[u8],
    key: Option<&str>,
) -> bool {
    match factory.inject_raw(queue, raw, key).await {
        Ok(()) => true,
        Err(crate::Error::Unsupported { .. }) => {
            eprintln!("skipped: this transport's factory cannot inject raw bytes (inject_raw)");
            false
        }
        Err(e) => panic!(
            "inject_raw({queue}, {} bytes) failed: {e} ({e:?})",
            raw.len()
        ),
    }
}

/// Waits for the one dead letter of `queue` and checks it is the poison `raw`, found by
/// id too (what `tidings dlq show <id>` does).
async fn expect_poison_dead_letter(t: &dyn Transport, queue: &str, raw: &[u8]) -> DeadLetter {
    let listed = dead_letters_until(t, &of_queue(queue), 1).await;
    let dl = listed.into_iter().next().expect("one dead letter listed");
    let env = &dl.envelope;
    assert_eq!(dl.queue, queue, "the dead letter names its endpoint queue");
    assert_eq!(
        env.header(headers::FAULT_REASON),
        Some("undecodable"),
        "fault reason of a poison message; headers {:?}",
        env.headers
    );
    assert_eq!(env.header(headers::FAULT_ORIGINAL_QUEUE), Some(queue));
    assert!(
        env.header(headers::FAULT_ERROR)
            .is_some_and(|e| !e.is_empty()),
        "the dead letter says why decoding failed: {:?}",
        env.headers
    );
    assert_eq!(env.content_type, UNDECODABLE_CONTENT_TYPE);
    assert_eq!(&env.body[..], raw, "the raw bytes are kept as the body");
    let by_id = DeadLetterQuery {
        ids: vec![env.id],
        ..of_queue(queue)
    };
    let found = dead_letters(t, &by_id).await;
    assert_eq!(
        found.len(),
        1,
        "the dead letter is found by its id {}",
        env.id
    );
    dl
}

fn ordered(prefetch: usize, park: bool) -> ReceiveOptions {
    ReceiveOptions {
        prefetch,
        lease: LEASE,
        ordered: true,
        park_on_dead_letter: park,
    }
}

fn keyed(ty: &str, key: &str, seq: u64) -> Envelope {
    let mut e = message(ty, seq);
    e.partition_key = Some(key.to_string());
    e
}

/// A poison message is dead-lettered (reason `undecodable`, raw bytes kept) within a
/// lease, is never delivered nor comes back, and the message behind it is delivered.
pub async fn undecodable_message_is_dead_lettered(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "poison").await;
    let raw = poison_bytes();
    if !inject(factory, &q, &raw, None).await {
        return;
    }
    let good = message(&type_name("poison"), 1);
    send_to(&*t, &q, good.clone()).await;
    let mut rx = open(&*t, &q, options(8, LEASE)).await;
    let d = recv(&mut *rx, "the good message behind a poison one").await;
    assert_eq!(
        d.envelope.id, good.id,
        "only the good message is delivered; the poison one is dead-lettered by the receiver"
    );
    ack(d, "the good message").await;
    expect_poison_dead_letter(&*t, &q, &raw).await;
    expect_nothing(&mut *rx, QUIET, "the poison message must not come back").await;
    stats_until(&*t, &q, "empty queue, one dead letter", |s| {
        s.ready == 0 && s.error_depth == 1
    })
    .await;
    assert_eq!(must(t.purge(&of_queue(&q)).await, "purge"), 1);
    close(&mut *rx, "receiver").await;
}

/// On an ordered queue without parking, a poison message releases its key: the key's
/// next message is delivered.
pub async fn undecodable_message_releases_its_key(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = queue_name("poison_ord");
    declare(
        &*t,
        vec![QueueSpec {
            ordered: true,
            ..spec(&q)
        }],
    )
    .await;
    let raw = poison_bytes();
    if !inject(factory, &q, &raw, Some("key-p")).await {
        return;
    }
    let ty = type_name("poison_ord");
    let k1 = keyed(&ty, "key-p", 1);
    send_to(&*t, &q, k1.clone()).await;
    let mut rx = open(&*t, &q, ordered(8, false)).await;
    let d = recv(&mut *rx, "the poison key's next message (key released)").await;
    assert_eq!(d.envelope.id, k1.id);
    ack(d, "the key's next message").await;
    expect_poison_dead_letter(&*t, &q, &raw).await;
    expect_nothing(&mut *rx, QUIET, "the poison message must not come back").await;
    close(&mut *rx, "receiver").await;
}

/// On an ordered queue with `park_on_dead_letter`, a poison message parks its key (the
/// key's next message waits; other keys flow) until its dead letter is purged.
pub async fn undecodable_message_parks_its_key(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = queue_name("poison_park");
    declare(
        &*t,
        vec![QueueSpec {
            ordered: true,
            ..spec(&q)
        }],
    )
    .await;
    let raw = poison_bytes();
    if !inject(factory, &q, &raw, Some("key-p")).await {
        return;
    }
    let ty = type_name("poison_park");
    let (k1, o1) = (keyed(&ty, "key-p", 1), keyed(&ty, "key-o", 101));
    send_to(&*t, &q, k1.clone()).await;
    send_to(&*t, &q, o1.clone()).await;
    let mut rx = open(&*t, &q, ordered(8, true)).await;
    let d = recv(
        &mut *rx,
        "another key's message while the poison key is parked",
    )
    .await;
    assert_eq!(
        d.envelope.id,
        o1.id,
        "expected key-o's message (key-p is parked), got seq {} of key {:?}",
        seq(&d.envelope),
        d.envelope.partition_key
    );
    ack(d, "key-o's message").await;
    let dl = expect_poison_dead_letter(&*t, &q, &raw).await;
    assert_eq!(
        dl.envelope.partition_key.as_deref(),
        Some("key-p"),
        "the dead letter keeps the key it parks"
    );
    expect_nothing(&mut *rx, QUIET, "key-p is parked behind its poison message").await;
    let s = queue_stats(&*t, &q).await;
    if let Some(parked) = s.parked_keys {
        assert_eq!(parked, 1, "parked_keys: {s:?}");
    }
    assert_eq!(must(t.purge(&of_queue(&q)).await, "purge"), 1);
    let d = recv(
        &mut *rx,
        "key-p's message once its poison dead letter is purged",
    )
    .await;
    assert_eq!(d.envelope.id, k1.id);
    ack(d, "key-p's message").await;
    close(&mut *rx, "receiver").await;
}
