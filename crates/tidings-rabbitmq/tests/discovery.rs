//! Queue discovery through the management HTTP API: a second, fresh transport (its own
//! connection, nothing declared — like the `tidings` CLI in another process) sees the
//! endpoint queues and dead letters another transport made, and can replay them. Without
//! the management API it falls back to the queues it declared itself.

mod common;

use std::time::Duration;

use tidings_core::envelope::headers;
use tidings_core::transport::{
    DeadLetterQuery, Outgoing, QueueSpec, QueueStats, ReceiveOptions, Topology, Transport,
};
use tidings_core::{Envelope, Fault, FaultReason};
use tidings_rabbitmq::{RabbitMqConfig, RabbitMqTransport};

fn find<'a>(stats: &'a [QueueStats], queue: &str) -> Option<&'a QueueStats> {
    stats.iter().find(|s| s.queue == queue)
}

async fn fresh(params: &str) -> RabbitMqTransport {
    let url = common::amqp_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = if params.is_empty() {
        url
    } else {
        format!("{url}{sep}{params}")
    };
    RabbitMqTransport::connect(RabbitMqConfig::from_url(&url).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_transport_lists_queues_and_dead_letters_it_never_declared() {
    if common::unreachable().is_some() || common::management_unreachable().is_some() {
        return;
    }
    let a = tidings_core::conformance::unique("disc_a");
    let b = tidings_core::conformance::unique("disc_b");
    let owner = common::transport().await;
    let spec = |name: &str| QueueSpec {
        name: name.to_string(),
        ..QueueSpec::default()
    };
    owner
        .declare(&Topology {
            queues: vec![spec(&a), spec(&b)],
        })
        .await
        .unwrap();
    let mut batch: Vec<Outgoing> = (0..3)
        .map(|i| Outgoing::to_queue(&a, Envelope::new("disc.test", 1, format!("{{\"i\":{i}}}"))))
        .collect();
    batch.push(Outgoing::to_queue(&b, Envelope::new("disc.test", 1, "{}")));
    let first_id = batch[0].envelope.id;
    owner.send(batch).await.unwrap();

    // Dead-letter the first message of `a`; the other two go back to ready on close.
    let mut rx = owner
        .receive(
            &a,
            ReceiveOptions {
                prefetch: 1,
                ..ReceiveOptions::default()
            },
        )
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery in time")
        .unwrap()
        .unwrap();
    assert_eq!(d.envelope.id, first_id);
    let mut env = d.envelope.clone();
    Fault::new(FaultReason::HandlerFailed, "boom", &a).apply(&mut env);
    d.settle.dead_letter(env).await.unwrap();
    rx.close().await.unwrap();

    // A transport that declared nothing lists both queues with exact counts, and neither
    // error queues nor delay levels as endpoints.
    let other = fresh("").await;
    assert!(other.config().management_url().is_some());
    let stats = other.stats().await.unwrap();
    let sa = find(&stats, &a).unwrap_or_else(|| panic!("{a} not listed: {stats:?}"));
    assert_eq!((sa.ready, sa.error_depth), (2, 1), "{sa:?}");
    let sb = find(&stats, &b).unwrap_or_else(|| panic!("{b} not listed: {stats:?}"));
    assert_eq!((sb.ready, sb.error_depth), (1, 0), "{sb:?}");
    assert!(
        find(&stats, &format!("{a}_error")).is_none(),
        "an error queue listed as an endpoint: {stats:?}"
    );
    assert!(
        stats.iter().all(|s| !s.queue.starts_with("tidings_delay")),
        "a delay level listed as an endpoint: {stats:?}"
    );

    // In flight comes from the management API's sampled `messages_unacknowledged`.
    let mut rx = owner
        .receive(
            &b,
            ReceiveOptions {
                prefetch: 1,
                ..ReceiveOptions::default()
            },
        )
        .await
        .unwrap();
    let held = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a delivery of b in time")
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = other.stats().await.unwrap();
        let sb = find(&stats, &b).unwrap().clone();
        if sb.in_flight == Some(1) {
            assert_eq!(sb.ready, 0, "{sb:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "in_flight of {b} never became 1: {sb:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    held.ack().await.unwrap();
    rx.close().await.unwrap();

    // The dead letter is found with no queue filter.
    let all = other
        .dead_letters(&DeadLetterQuery::default())
        .await
        .unwrap();
    let dl = all
        .iter()
        .find(|d| d.envelope.id == first_id)
        .unwrap_or_else(|| panic!("dead letter {first_id} not found among {}", all.len()));
    assert_eq!(dl.queue, a);
    assert_eq!(
        dl.envelope.header(headers::FAULT_REASON),
        Some(FaultReason::HandlerFailed.as_str())
    );

    // ... and replayed through the fresh transport, still without a queue filter.
    let only = DeadLetterQuery {
        ids: vec![first_id],
        ..DeadLetterQuery::default()
    };
    assert_eq!(other.replay(&only, None).await.unwrap(), 1);
    let stats = other.stats().await.unwrap();
    let sa = find(&stats, &a).unwrap();
    assert_eq!((sa.ready, sa.error_depth), (3, 0), "{sa:?}");
    let mut rx = other.receive(&a, ReceiveOptions::default()).await.unwrap();
    let mut replayed = None;
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a delivery of a in time")
            .unwrap()
            .unwrap();
        if d.envelope.id == first_id {
            replayed = Some(d.envelope.header(headers::REPLAYED).map(str::to_string));
        }
        d.ack().await.unwrap();
    }
    assert_eq!(
        replayed,
        Some(Some("1".to_string())),
        "the replayed copy came back"
    );
    rx.close().await.unwrap();

    // Without the management API: only what this transport declared (today's fallback),
    // and no error for a management API that does not answer.
    let off = fresh("management=off").await;
    assert!(off.config().management_url().is_none());
    assert!(find(&off.stats().await.unwrap(), &a).is_none());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = fresh(&format!("management=http://127.0.0.1:{port}")).await;
    assert!(find(&down.stats().await.unwrap(), &a).is_none());
    assert!(down
        .dead_letters(&DeadLetterQuery::default())
        .await
        .unwrap()
        .is_empty());
    let wrong = fresh("management=http://guest:not-the-password@127.0.0.1:15672").await;
    assert!(find(&wrong.stats().await.unwrap(), &a).is_none());

    for t in [&owner, &other, &off, &down, &wrong] {
        let _ = t.close().await;
    }
    common::delete_queue(&a).await;
    common::delete_queue(&b).await;
}
