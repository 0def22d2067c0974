//! The life of a queue as a whole: deleting it removes its messages (ready, in flight,
//! scheduled), its error queue and its subscriptions, and leaves other queues alone.

use chrono::{TimeDelta, Utc};

use super::super::support::*;
use super::super::TransportFactory;
use crate::transport::{Outgoing, QueueSpec, ReceiveOptions, Transport};
use crate::{Error, FaultReason};

/// Polls `stats()` until it no longer lists `queue` (within [`WAIT`]).
async fn until_unlisted(t: &dyn Transport, queue: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = must(t.stats().await, "stats()");
        if all.iter().all(|s| s.queue != queue) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("stats() still lists `{queue}` {WAIT:?} after delete_queue");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Declares `queue` subscribed to `event`, and a neighbour subscribed to it too; gives
/// `queue` a dead letter, a delivery in flight, a ready, a scheduled and a published
/// message; deletes it. Then: stats no longer list it, sending to it fails with
/// `UnknownQueue`, its subscription is gone (a re-declared queue without subscriptions
/// gets no event), a re-declared queue is empty and has no dead letters, the neighbour
/// keeps everything, and deleting again (or a queue never declared) is `Ok`. Last, an
/// ordered queue is deleted the same way.
pub async fn delete_queue_removes_queue_messages_and_error_queue(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = queue_name("delete");
    let keep = queue_name("delete_keep");
    let (cmd, event) = (type_name("delete-cmd"), type_name("delete-event"));
    let subscribed = |name: &str| QueueSpec {
        subscriptions: vec![event.clone()],
        ..spec(name)
    };
    declare(&*t, vec![subscribed(&q), subscribed(&keep)]).await;

    // A dead letter in each queue.
    for queue in [&q, &keep] {
        send_to(&*t, queue, message(&cmd, 1)).await;
        let mut rx = open(&*t, queue, ReceiveOptions::default()).await;
        let d = recv(&mut *rx, format!("the message to dead-letter in `{queue}`")).await;
        dead_letter(d, FaultReason::HandlerFailed, "boom").await;
        close(&mut *rx, "the dead-lettering receiver").await;
    }
    dead_letters_until(&*t, &of_queue(&q), 1).await;
    dead_letters_until(&*t, &of_queue(&keep), 1).await;

    // In flight, ready, scheduled an hour ahead, and published (to both queues).
    let mut later = message(&cmd, 4);
    later.scheduled_for = Some(millis(Utc::now() + TimeDelta::hours(1)));
    send(
        &*t,
        vec![
            Outgoing::to_queue(&q, message(&cmd, 2)),
            Outgoing::to_queue(&q, message(&cmd, 3)),
            Outgoing::to_queue(&q, later),
            Outgoing::publish(message(&event, 5)),
        ],
    )
    .await;
    stats_until(&*t, &keep, "the published event in the neighbour", |s| {
        s.ready == 1
    })
    .await;
    let mut rx = open(&*t, &q, options(1, std::time::Duration::from_secs(60))).await;
    let held = recv(&mut *rx, "a message to hold in flight").await;

    must(t.delete_queue(&q).await, format!("delete_queue({q})"));
    drop(held);
    drop(rx);
    until_unlisted(&*t, &q).await;
    match t.dead_letters(&of_queue(&q)).await {
        Ok(found) => assert!(
            found.is_empty(),
            "dead letters of deleted `{q}` still listed: {found:?}"
        ),
        Err(Error::UnknownQueue(_)) => {}
        Err(e) => panic!("dead_letters of deleted `{q}`: expected none or UnknownQueue, got {e}"),
    }
    match t.send(vec![Outgoing::to_queue(&q, message(&cmd, 6))]).await {
        Err(Error::UnknownQueue(name)) => assert_eq!(name, q, "UnknownQueue names the queue"),
        Err(e) => panic!("send to deleted `{q}`: expected UnknownQueue, got {e} ({e:?})"),
        Ok(()) => panic!("send to deleted `{q}`: expected UnknownQueue, got Ok"),
    }

    // Again, and a queue never declared: both Ok.
    must(t.delete_queue(&q).await, "a second delete_queue");
    let never = queue_name("delete_never");
    must(
        t.delete_queue(&never).await,
        format!("delete_queue of never declared `{never}`"),
    );

    // Re-declared without subscriptions: empty, no dead letters, gets no event.
    declare(&*t, vec![spec(&q)]).await;
    send(&*t, vec![Outgoing::publish(message(&event, 7))]).await;
    stats_until(
        &*t,
        &keep,
        "the neighbour keeps its message and dead letter and gets the new event",
        |s| s.ready == 2 && s.error_depth == 1,
    )
    .await;
    let s = stats_until(&*t, &q, "the re-declared queue is empty", |s| {
        s.ready == 0
            && s.error_depth == 0
            && s.in_flight.is_none_or(|n| n == 0)
            && s.scheduled.is_none_or(|n| n == 0)
    })
    .await;
    assert_eq!(s.parked_keys.unwrap_or(0), 0, "parked keys: {s:?}");
    let left = dead_letters(&*t, &of_queue(&q)).await;
    assert!(
        left.is_empty(),
        "the re-declared queue has the old dead letters: {left:?}"
    );
    let mut rx = open(&*t, &q, ReceiveOptions::default()).await;
    expect_nothing(
        &mut *rx,
        QUIET,
        "a deleted queue's messages and subscription must not come back",
    )
    .await;
    dead_letters_until(&*t, &of_queue(&keep), 1).await;
    cleanup(&*t, &[&keep]).await;

    // An ordered queue (more than one stream or table behind it on some transports).
    let ordered = queue_name("delete_ordered");
    declare(
        &*t,
        vec![QueueSpec {
            ordered: true,
            ..spec(&ordered)
        }],
    )
    .await;
    let mut keyed = message(&cmd, 8);
    keyed.partition_key = Some("key-8".into());
    send_to(&*t, &ordered, keyed).await;
    stats_until(&*t, &ordered, "the keyed message", |s| s.ready == 1).await;
    must(
        t.delete_queue(&ordered).await,
        format!("delete_queue({ordered})"),
    );
    until_unlisted(&*t, &ordered).await;
    declare(&*t, vec![spec(&ordered)]).await;
    stats_until(
        &*t,
        &ordered,
        "the re-declared ordered queue is empty",
        |s| s.ready == 0,
    )
    .await;
}
