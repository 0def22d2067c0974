//! Error queues: dead-lettering keeps the message and its fault headers; listing filters;
//! replay and purge; queue stats.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use super::super::support::*;
use super::super::TransportFactory;
use super::basic::assert_same_envelope;
use crate::envelope::headers;
use crate::transport::{DeadLetterQuery, ReceiveOptions};
use crate::{Envelope, FaultReason};

/// The sequence numbers of the dead letters `query` lists, sorted.
async fn seqs(t: &dyn crate::transport::Transport, query: &DeadLetterQuery) -> Vec<u64> {
    let mut v: Vec<u64> = dead_letters(t, query)
        .await
        .iter()
        .map(|d| seq(&d.envelope))
        .collect();
    v.sort();
    v
}

/// Receives `n` deliveries and dead-letters each with the reason `reasons[seq]` gives;
/// returns the dead-lettered envelopes by id.
async fn dead_letter_all(
    rx: &mut dyn crate::transport::Receiver,
    n: usize,
    reason: impl Fn(u64) -> FaultReason,
) -> HashMap<Uuid, Envelope> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let d = recv(rx, "a message to dead-letter").await;
        let s = seq(&d.envelope);
        let env = dead_letter(d, reason(s), &format!("boom #{s}")).await;
        out.insert(env.id, env);
    }
    out
}

/// A dead letter keeps its body and headers (fault headers included), names its original
/// queue, and the query filters (queue, type, reason, ids, since, limit) work.
pub async fn error_queue_keeps_headers(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "dlq").await;
    let other = fresh_queue(&*t, "dlq_other").await;
    let (type_a, type_b) = (type_name("failing-a"), type_name("failing-b"));
    let before = Utc::now() - TimeDelta::seconds(60);
    let mut sent = Vec::new();
    for (i, ty) in [&type_a, &type_a, &type_b].into_iter().enumerate() {
        let mut m = message(ty, i as u64);
        m.headers.insert("x-tenant".into(), format!("tenant-{i}"));
        m.correlation_id = Some(format!("corr-{i}"));
        m.partition_key = Some(format!("key-{i}"));
        sent.push(m.clone());
        send_to(&*t, &q, m).await;
    }
    let mut rx = open(&*t, &q, ReceiveOptions::default()).await;
    let reason = |s: u64| {
        if s == 1 {
            FaultReason::Undeserializable
        } else {
            FaultReason::HandlerFailed
        }
    };
    let dead = dead_letter_all(&mut *rx, 3, reason).await;

    let listed = dead_letters_until(&*t, &of_queue(&q), 3).await;
    for w in listed.windows(2) {
        assert!(
            w[0].dead_lettered_at <= w[1].dead_lettered_at,
            "dead_letters must list oldest first"
        );
    }
    for dl in &listed {
        let Some(want) = dead.get(&dl.envelope.id) else {
            panic!(
                "dead_letters lists a message never dead-lettered: {:?}",
                dl.envelope.id
            );
        };
        assert_eq!(dl.queue, q, "DeadLetter::queue must be the original queue");
        assert_same_envelope(&dl.envelope, want, "dead letter (fault headers included)");
        assert_eq!(
            dl.envelope.header(headers::FAULT_ORIGINAL_QUEUE),
            Some(q.as_str())
        );
        let age = Utc::now() - dl.dead_lettered_at;
        assert!(
            age > TimeDelta::seconds(-60) && age < TimeDelta::seconds(120),
            "dead_lettered_at {} is not about now",
            dl.dead_lettered_at
        );
    }

    let ids = |q: DeadLetterQuery| {
        let t = t.clone();
        async move { seqs(&*t, &q).await }
    };
    let base = of_queue(&q);
    let by_type_a = DeadLetterQuery {
        message_type: Some(type_a.clone()),
        ..base.clone()
    };
    assert_eq!(ids(by_type_a.clone()).await, vec![0, 1], "filter by type A");
    let by_type_b = DeadLetterQuery {
        message_type: Some(type_b.clone()),
        ..base.clone()
    };
    assert_eq!(ids(by_type_b).await, vec![2], "filter by type B");
    let failed = DeadLetterQuery {
        reason: Some("handler-failed".into()),
        ..base.clone()
    };
    assert_eq!(ids(failed).await, vec![0, 2], "filter by reason");
    let undeserializable = DeadLetterQuery {
        reason: Some("undeserializable".into()),
        ..base.clone()
    };
    assert_eq!(ids(undeserializable).await, vec![1], "filter by reason");
    let a_failed = DeadLetterQuery {
        reason: Some("handler-failed".into()),
        ..by_type_a
    };
    assert_eq!(ids(a_failed).await, vec![0], "filter by type and reason");
    let by_id = DeadLetterQuery {
        ids: vec![sent[2].id],
        ..base.clone()
    };
    assert_eq!(ids(by_id).await, vec![2], "filter by id");
    let since_before = DeadLetterQuery {
        since: Some(before),
        ..base.clone()
    };
    assert_eq!(
        ids(since_before).await,
        vec![0, 1, 2],
        "filter since a minute ago"
    );
    let since_later = DeadLetterQuery {
        since: Some(Utc::now() + TimeDelta::hours(1)),
        ..base.clone()
    };
    assert_eq!(
        ids(since_later).await,
        Vec::<u64>::new(),
        "filter since the future"
    );
    let limited = DeadLetterQuery {
        limit: 2,
        ..base.clone()
    };
    assert_eq!(dead_letters(&*t, &limited).await.len(), 2, "limit 2");
    assert_eq!(
        ids(of_queue(&other)).await,
        Vec::<u64>::new(),
        "another queue"
    );

    expect_nothing(
        &mut *rx,
        QUIET,
        "dead-lettered messages must leave the queue",
    )
    .await;
    assert_eq!(
        must(t.purge(&base).await, "purge"),
        3,
        "purge returns how many"
    );
    cleanup(&*t, &[&q, &other]).await;
}

/// Replay puts a dead letter back on its queue (or another), marked `tidings-replayed`;
/// purge deletes the rest.
pub async fn replay_moves_dead_letter_back(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "replay").await;
    let elsewhere = fresh_queue(&*t, "replay_to").await;
    let ty = type_name("replay");
    let sent: Vec<Envelope> = (0..3).map(|i| message(&ty, i)).collect();
    for m in &sent {
        send_to(&*t, &q, m.clone()).await;
    }
    let mut rx = open(&*t, &q, ReceiveOptions::default()).await;
    let dead = dead_letter_all(&mut *rx, 3, |_| FaultReason::HandlerFailed).await;
    dead_letters_until(&*t, &of_queue(&q), 3).await;

    let only = |id: Uuid| DeadLetterQuery {
        ids: vec![id],
        ..of_queue(&q)
    };
    // Back to the original queue.
    let n = must(t.replay(&only(sent[0].id), None).await, "replay");
    assert_eq!(n, 1, "replay returns how many moved");
    let d = recv(&mut *rx, "the replayed message").await;
    assert_eq!(d.envelope.id, sent[0].id, "replayed message");
    assert!(
        d.envelope
            .header(headers::REPLAYED)
            .is_some_and(|v| !v.is_empty()),
        "a replayed message carries `{}`: headers {:?}",
        headers::REPLAYED,
        d.envelope.headers
    );
    assert_eq!(d.envelope.body, sent[0].body, "replayed body");
    assert_eq!(d.envelope.header(SEQ), Some("0"), "replayed headers kept");
    assert_eq!(d.queue, q);
    ack(d, "the replayed message").await;
    let left = dead_letters_until(&*t, &of_queue(&q), 2).await;
    assert!(left.iter().all(|dl| dl.envelope.id != sent[0].id));

    // To another queue.
    let n = must(
        t.replay(&only(sent[1].id), Some(&elsewhere)).await,
        "replay to",
    );
    assert_eq!(n, 1, "replay(to) returns how many moved");
    let mut rx2 = open(&*t, &elsewhere, ReceiveOptions::default()).await;
    let d = recv(&mut *rx2, "the message replayed to another queue").await;
    assert_eq!(d.envelope.id, sent[1].id);
    assert!(d.envelope.header(headers::REPLAYED).is_some());
    assert_eq!(d.envelope.body, dead[&sent[1].id].body, "replayed body");
    ack(d, "the message replayed elsewhere").await;

    // Purge the last one.
    let n = must(t.purge(&of_queue(&q)).await, "purge");
    assert_eq!(n, 1, "purge returns how many it deleted");
    dead_letters_until(&*t, &of_queue(&q), 0).await;
    expect_nothing(&mut *rx, QUIET, "a purged dead letter must not come back").await;
    expect_nothing(
        &mut *rx2,
        Duration::from_millis(300),
        "only one was replayed here",
    )
    .await;
    stats_until(&*t, &q, "error_depth == 0", |s| s.error_depth == 0).await;
    assert_eq!(
        must(t.replay(&of_queue(&q), None).await, "replay of nothing"),
        0
    );
}

/// `stats()` reports ready, in-flight and error depth as they change.
pub async fn stats_reflect_reality(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "stats").await;
    let idle = fresh_queue(&*t, "stats_idle").await;
    let ty = type_name("stats");
    for i in 0..5 {
        send_to(&*t, &q, message(&ty, i)).await;
    }
    stats_until(&*t, &q, "ready == 5, error_depth == 0", |s| {
        s.ready == 5 && s.error_depth == 0 && s.in_flight.is_none_or(|n| n == 0)
    })
    .await;
    let s = queue_stats(&*t, &idle).await;
    assert_eq!((s.ready, s.error_depth), (0, 0), "idle queue: {s:?}");

    let mut rx = open(&*t, &q, options(2, Duration::from_secs(30))).await;
    let d1 = recv(&mut *rx, "message 1").await;
    let d2 = recv(&mut *rx, "message 2").await;
    stats_until(&*t, &q, "ready == 3 with 2 in flight", |s| {
        s.ready == 3 && s.in_flight.is_none_or(|n| n == 2)
    })
    .await;
    dead_letter(d1, FaultReason::HandlerFailed, "boom").await;
    ack(d2, "message 2").await;
    close(&mut *rx, "the receiver").await;
    drop(rx);
    stats_until(&*t, &q, "ready == 3, error_depth == 1", |s| {
        s.ready == 3 && s.error_depth == 1 && s.in_flight.is_none_or(|n| n == 0)
    })
    .await;
    let s = queue_stats(&*t, &q).await;
    if let Some(age) = s.oldest_age {
        assert!(
            age < Duration::from_secs(600),
            "oldest_age {age:?} is not plausible"
        );
    }
    assert_eq!(must(t.purge(&of_queue(&q)).await, "purge"), 1);
    stats_until(&*t, &q, "error_depth == 0", |s| s.error_depth == 0).await;
}

/// Replaying to a queue that does not exist fails and keeps the dead letters.
pub async fn replay_to_unknown_queue_keeps_dead_letters(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "replay_unknown").await;
    let ty = type_name("replay-unknown");
    send_to(&*t, &q, message(&ty, 0)).await;
    let mut rx = open(&*t, &q, ReceiveOptions::default()).await;
    dead_letter_all(&mut *rx, 1, |_| FaultReason::HandlerFailed).await;
    dead_letters_until(&*t, &of_queue(&q), 1).await;
    let nowhere = queue_name("never_declared");
    match t.replay(&of_queue(&q), Some(&nowhere)).await {
        Err(_) => {}
        Ok(n) => panic!("replay to undeclared queue `{nowhere}` must fail, moved {n}"),
    }
    let left = dead_letters(&*t, &of_queue(&q)).await;
    assert_eq!(left.len(), 1, "a failed replay must keep the dead letter");
    cleanup(&*t, &[&q]).await;
}
