//! Sending, receiving, publishing, size limits and closing.

use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use super::super::support::*;
use super::super::TransportFactory;
use crate::envelope::headers;
use crate::transport::{Outgoing, QueueSpec, ReceiveOptions};
use crate::{Envelope, Error};

/// An envelope with every field set.
fn full_envelope(message_type: &str, body: Bytes, content_type: &str) -> Envelope {
    let mut e = Envelope::new(message_type, 3, body);
    e.correlation_id = Some(format!("corr-{}", Uuid::new_v4()));
    e.causation_id = Some(Uuid::now_v7());
    e.conversation_id = Some(Uuid::now_v7());
    e.source_endpoint = Some("conformance-endpoint".into());
    e.sent_at = millis(Utc::now());
    e.partition_key = Some("customer-42".into());
    e.expires_at = Some(millis(Utc::now() + TimeDelta::hours(1)));
    e.content_type = content_type.into();
    e.headers.insert(
        headers::TRACEPARENT.into(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
    );
    e.headers.insert("x-tenant".into(), "acme".into());
    e.headers
        .insert("x-note".into(), "spaces, commas; ünïcödé \"quotes\"".into());
    e
}

/// Panics naming the first field where `got` differs from `want`.
pub(crate) fn assert_same_envelope(got: &Envelope, want: &Envelope, what: &str) {
    macro_rules! field {
        ($f:ident) => {
            assert_eq!(
                got.$f,
                want.$f,
                "{what}: envelope field `{}` changed in transit",
                stringify!($f)
            );
        };
    }
    field!(id);
    field!(message_type);
    field!(version);
    field!(correlation_id);
    field!(causation_id);
    field!(conversation_id);
    field!(source_endpoint);
    field!(sent_at);
    field!(partition_key);
    field!(scheduled_for);
    field!(expires_at);
    field!(headers);
    field!(content_type);
    field!(body);
}

/// A message sent to a queue arrives with every envelope field intact, delivery count 1.
pub async fn send_receive(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "send_receive").await;
    let ty = type_name("send-receive");
    let json = full_envelope(
        &ty,
        Bytes::from_static("{\"order\":42,\"note\":\"ünïcödé\"}".as_bytes()),
        "application/json",
    );
    let binary = full_envelope(
        &ty,
        Bytes::from_static(&[0x00, 0x9f, 0x92, 0x96, 0xff, b'\n']),
        "application/octet-stream",
    );
    let mut rx = open(&*t, &q, ReceiveOptions::default()).await;
    send(
        &*t,
        vec![
            Outgoing::to_queue(&q, json.clone()),
            Outgoing::to_queue(&q, binary.clone()),
        ],
    )
    .await;
    for _ in 0..2 {
        let d = recv(&mut *rx, "a message sent to the queue").await;
        let want = if d.envelope.id == json.id {
            &json
        } else if d.envelope.id == binary.id {
            &binary
        } else {
            panic!("received an unknown message {:?}", d);
        };
        let what = format!("message with {} body", want.content_type);
        assert_same_envelope(&d.envelope, want, &what);
        assert_eq!(d.delivery_count, 1, "{what}: first delivery must count 1");
        assert_eq!(d.queue, q, "{what}: Delivery::queue");
        ack(d, &what).await;
    }
    expect_nothing(&mut *rx, QUIET, "both messages were acked").await;
}

/// Publishing copies an event to every subscribed queue once, and to no other queue.
pub async fn publish_fans_out_to_subscribers_only(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let event = type_name("fan-out");
    let other_event = type_name("fan-out-other");
    let subscribers: Vec<String> = (1..=3)
        .map(|i| queue_name(&format!("fanout_sub{i}")))
        .collect();
    let bystander = queue_name("fanout_other");
    let mut queues: Vec<QueueSpec> = subscribers
        .iter()
        .map(|name| QueueSpec {
            subscriptions: vec![event.clone()],
            ..spec(name)
        })
        .collect();
    queues.push(QueueSpec {
        subscriptions: vec![other_event],
        ..spec(&bystander)
    });
    declare(&*t, queues.clone()).await;
    // Declaring is idempotent: again must not duplicate subscriptions.
    declare(&*t, queues).await;

    let mut rxs = Vec::new();
    for q in subscribers.iter().chain([&bystander]) {
        rxs.push((q.clone(), open(&*t, q, ReceiveOptions::default()).await));
    }
    let published = message(&event, 1);
    send(&*t, vec![Outgoing::publish(published.clone())]).await;
    // An event nobody subscribes to is not an error.
    send(
        &*t,
        vec![Outgoing::publish(message(&type_name("unsubscribed"), 2))],
    )
    .await;

    for (q, rx) in rxs.iter_mut().take(subscribers.len()) {
        let d = recv(
            &mut **rx,
            format!("the published event in subscriber `{q}`"),
        )
        .await;
        assert_same_envelope(&d.envelope, &published, &format!("copy in `{q}`"));
        assert_eq!(d.delivery_count, 1, "copy in `{q}`: delivery_count");
        ack(d, format!("copy in `{q}`")).await;
    }
    for (q, rx) in rxs.iter_mut() {
        let why = if *q == bystander {
            format!("`{q}` does not subscribe to `{event}` and must get nothing")
        } else {
            format!("subscriber `{q}` must get exactly one copy")
        };
        expect_nothing(&mut **rx, QUIET, why).await;
    }
}

/// A message over `max_message_size()` fails with `MessageTooLarge` and its whole batch is
/// not sent; a message of exactly the limit is accepted.
pub async fn oversize_message_rejected(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "oversize").await;
    let ty = type_name("oversize");
    let max = t.max_message_size();
    if max > 512 * 1024 * 1024 {
        eprintln!("skipped: max_message_size {max} is too large to test here");
        return;
    }
    let small = message(&ty, 1);
    let mut big = message(&ty, 2);
    big.body = Bytes::from(vec![b'x'; max + 1]);
    let r = t
        .send(vec![
            Outgoing::to_queue(&q, small),
            Outgoing::to_queue(&q, big),
        ])
        .await;
    match r {
        Err(Error::MessageTooLarge { size, limit }) => {
            assert_eq!(
                limit, max,
                "MessageTooLarge::limit must be max_message_size()"
            );
            assert!(size > max, "MessageTooLarge::size {size} must exceed {max}");
        }
        Err(e) => panic!("oversize send: expected MessageTooLarge, got {e} ({e:?})"),
        Ok(()) => panic!("oversize send: expected MessageTooLarge, got Ok"),
    }
    let mut rx = open(&*t, &q, ReceiveOptions::default()).await;
    expect_nothing(
        &mut *rx,
        QUIET,
        "a batch with an oversize message must not be sent, not even its small message",
    )
    .await;
    let s = queue_stats(&*t, &q).await;
    assert_eq!(
        s.ready, 0,
        "nothing must be enqueued after MessageTooLarge: {s:?}"
    );

    if max <= 16 * 1024 * 1024 {
        let mut at_limit = message(&ty, 3);
        let room = max - (at_limit.encoded_len() - at_limit.body.len());
        at_limit.body = Bytes::from(vec![b'y'; room]);
        assert_eq!(at_limit.encoded_len(), max);
        send_to(&*t, &q, at_limit.clone()).await;
        let d = recv(&mut *rx, "a message of exactly max_message_size()").await;
        assert_eq!(d.envelope.id, at_limit.id, "message at the limit");
        assert!(
            d.envelope.body == at_limit.body,
            "message at the limit: body of {} bytes came back as {} bytes",
            at_limit.body.len(),
            d.envelope.body.len()
        );
        ack(d, "message at the limit").await;
    }
}

/// After `close()`, sending fails with `Shutdown` and open receivers end.
pub async fn close_rejects_further_calls(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "close").await;
    let mut rx = open(&*t, &q, ReceiveOptions::default()).await;
    must(t.close().await, "close()");
    match t
        .send(vec![Outgoing::to_queue(
            &q,
            message("conformance.closed", 1),
        )])
        .await
    {
        Err(Error::Shutdown) => {}
        Err(e) => panic!("send after close: expected Error::Shutdown, got {e} ({e:?})"),
        Ok(()) => panic!("send after close: expected Error::Shutdown, got Ok"),
    }
    assert!(
        t.receive(&q, ReceiveOptions::default()).await.is_err(),
        "receive after close must fail"
    );
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Ok(None)) | Ok(Err(_)) => {}
        Ok(Ok(Some(d))) => panic!("recv after close delivered {d:?}"),
        Err(_) => panic!("recv after close still waiting after {WAIT:?}: it must end"),
    }
    // Closing twice is harmless.
    let _ = tokio::time::timeout(Duration::from_secs(5), t.close()).await;
}
