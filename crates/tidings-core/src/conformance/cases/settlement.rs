//! Settling deliveries (ack, nack, release, dropping, leases) and scheduled delivery.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use super::super::support::*;
use super::super::TransportFactory;
use crate::transport::ReceiveOptions;

/// Slack allowed for clocks and timer granularity when checking "not before".
const SLACK: Duration = Duration::from_millis(100);

/// An acked message never comes back, and the queue shows nothing ready.
pub async fn ack_removes(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "ack").await;
    let ty = type_name("ack");
    let mut rx = open(&*t, &q, options(8, Duration::from_secs(1))).await;
    send_to(&*t, &q, message(&ty, 1)).await;
    let d = recv(&mut *rx, "the message").await;
    ack(d, "the message").await;
    // Well past the 1 s lease: an acked message must not reappear.
    expect_nothing(
        &mut *rx,
        Duration::from_millis(2500),
        "an acked message must not come back",
    )
    .await;
    stats_until(&*t, &q, "ready == 0 and nothing in flight", |s| {
        s.ready == 0 && s.in_flight.is_none_or(|n| n == 0)
    })
    .await;
}

/// `nack(1 s)` redelivers no earlier than 1 s, and other messages flow meanwhile.
pub async fn nack_with_delay_comes_back_no_earlier(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "nack_delay").await;
    let ty = type_name("nack-delay");
    let mut rx = open(&*t, &q, options(8, Duration::from_secs(30))).await;
    let first = message(&ty, 1);
    send_to(&*t, &q, first.clone()).await;
    let d = recv(&mut *rx, "the message").await;
    assert_eq!(d.envelope.id, first.id);
    let delay = Duration::from_secs(1);
    let nacked_at = Instant::now();
    must(d.nack(delay).await, "nack(1 s)");

    let second = message(&ty, 2);
    send_to(&*t, &q, second.clone()).await;
    let d = recv(&mut *rx, "a message sent after the nack").await;
    assert_eq!(
        d.envelope.id, second.id,
        "a message sent after a nack(1 s) must be delivered before the delayed one"
    );
    ack(d, "the second message").await;

    let d = recv(&mut *rx, "the nacked message again").await;
    let waited = nacked_at.elapsed();
    assert_eq!(d.envelope.id, first.id, "redelivered message");
    assert!(
        waited + SLACK >= delay,
        "nack({delay:?}) came back after only {waited:?}"
    );
    assert_eq!(d.delivery_count, 2, "delivery_count after one nack");
    ack(d, "the redelivered message").await;
    expect_nothing(&mut *rx, QUIET, "everything was acked").await;
}

/// Each nack(0) redelivers at once with delivery_count 1, 2, 3.
pub async fn delivery_count_grows(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "delivery_count").await;
    let ty = type_name("delivery-count");
    let mut rx = open(&*t, &q, options(8, Duration::from_secs(30))).await;
    let m = message(&ty, 1);
    send_to(&*t, &q, m.clone()).await;
    for expected in 1..=3u32 {
        let d = recv(&mut *rx, format!("delivery {expected}")).await;
        assert_eq!(d.envelope.id, m.id, "delivery {expected}: same message");
        assert_eq!(d.delivery_count, expected, "delivery_count");
        if expected < 3 {
            must(d.nack(Duration::ZERO).await, "nack(0)");
        } else {
            ack(d, "last delivery").await;
        }
    }
    expect_nothing(&mut *rx, QUIET, "the message was acked").await;
}

/// A delivery dropped unsettled by a receiver that then ends comes back to a new
/// receiver (on a second connection) with delivery_count >= 2.
pub async fn unacked_delivery_comes_back_after_receiver_ends(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "unacked").await;
    let ty = type_name("unacked");
    let m = message(&ty, 1);
    send_to(&*t, &q, m.clone()).await;
    {
        let mut rx = open(&*t, &q, options(4, Duration::from_secs(2))).await;
        let d = recv(&mut *rx, "the message").await;
        assert_eq!(d.envelope.id, m.id);
        drop(d);
        close(&mut *rx, "the first receiver").await;
    }
    let t2 = connect(factory).await;
    let mut rx2 = open(&*t2, &q, options(4, Duration::from_secs(30))).await;
    let d = recv(&mut *rx2, "the unsettled message on a new receiver").await;
    assert_eq!(d.envelope.id, m.id, "the unsettled message");
    assert!(
        d.delivery_count >= 2,
        "second delivery must have delivery_count >= 2, got {}",
        d.delivery_count
    );
    ack(d, "the redelivered message").await;
    expect_nothing(&mut *rx2, QUIET, "the message was acked").await;
}

/// A released delivery, and everything a closed receiver had prefetched, go to another
/// receiver at once (long before the 60 s lease ends); close ends `recv`.
pub async fn shutdown_releases_in_flight(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "release").await;
    let ty = type_name("release");
    let sent: Vec<_> = (1..=3).map(|i| message(&ty, i)).collect();
    for m in &sent {
        send_to(&*t, &q, m.clone()).await;
    }
    let lease = Duration::from_secs(60);
    let mut rx = open(&*t, &q, options(10, lease)).await;
    let d = recv(&mut *rx, "a message").await;
    let released = d.envelope.id;
    must(d.release().await, "release()");
    close(&mut *rx, "the first receiver").await;
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(d))) => panic!("recv after close() must return None, got {d:?}"),
        Ok(Err(e)) => panic!("recv after close() must return None, got error {e}"),
        Err(_) => panic!("recv after close() did not return within {WAIT:?}"),
    }
    drop(rx);

    let t2 = connect(factory).await;
    let mut rx2 = open(&*t2, &q, options(10, lease)).await;
    let mut got = Vec::new();
    for _ in 0..sent.len() {
        let d = recv(&mut *rx2, "released/prefetched messages on a new receiver").await;
        if d.envelope.id == released {
            assert!(
                (1..=2).contains(&d.delivery_count),
                "a released message must not count as a failed delivery: delivery_count {}",
                d.delivery_count
            );
        }
        got.push(d.envelope.id);
        ack(d, "a released message").await;
    }
    got.sort();
    let mut want: Vec<_> = sent.iter().map(|m| m.id).collect();
    want.sort();
    assert_eq!(got, want, "every message must come back exactly once");
    expect_nothing(&mut *rx2, QUIET, "everything was acked").await;
}

/// `extend_lease` keeps a delivery from other receivers past its original lease.
pub async fn extend_lease_keeps_delivery_hidden(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "extend_lease").await;
    let ty = type_name("extend-lease");
    send_to(&*t, &q, message(&ty, 1)).await;
    let mut rx = open(&*t, &q, options(4, Duration::from_secs(1))).await;
    let d = recv(&mut *rx, "the message").await;
    must(
        d.settle.extend_lease(Duration::from_secs(8)).await,
        "extend_lease(8 s)",
    );
    let t2 = connect(factory).await;
    let mut rx2 = open(&*t2, &q, options(4, Duration::from_secs(30))).await;
    expect_nothing(
        &mut *rx2,
        Duration::from_secs(3),
        "a delivery whose lease was extended to 8 s must stay hidden for 3 s",
    )
    .await;
    ack(d, "the message").await;
    expect_nothing(&mut *rx2, QUIET, "the message was acked").await;
    expect_nothing(
        &mut *rx,
        Duration::from_millis(200),
        "the message was acked",
    )
    .await;
}

/// A scheduled message is not delivered before its time and does not hold back others;
/// one scheduled in the past is delivered at once.
pub async fn scheduled_delivery(factory: &impl TransportFactory) {
    let t = connect(factory).await;
    let q = fresh_queue(&*t, "scheduled").await;
    let ty = type_name("scheduled");
    let mut rx = open(&*t, &q, ReceiveOptions::default()).await;

    let started = Instant::now();
    let at = millis(Utc::now() + TimeDelta::seconds(1));
    let mut later = message(&ty, 1);
    later.scheduled_for = Some(at);
    send_to(&*t, &q, later.clone()).await;
    let now_msg = message(&ty, 2);
    send_to(&*t, &q, now_msg.clone()).await;

    let d = recv(&mut *rx, "the unscheduled message").await;
    assert_eq!(
        d.envelope.id, now_msg.id,
        "a message sent after a scheduled one must not wait behind it"
    );
    ack(d, "the unscheduled message").await;

    let d = recv(&mut *rx, "the scheduled message").await;
    let waited = started.elapsed();
    assert_eq!(d.envelope.id, later.id, "the scheduled message");
    assert!(
        waited + SLACK >= Duration::from_secs(1),
        "scheduled 1 s ahead but delivered after {waited:?}"
    );
    let early = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    assert!(
        early <= SLACK,
        "delivered {early:?} before its scheduled time"
    );
    assert_eq!(d.envelope.scheduled_for, Some(at), "scheduled_for kept");
    ack(d, "the scheduled message").await;

    let mut past = message(&ty, 3);
    past.scheduled_for = Some(Utc::now() - TimeDelta::hours(1));
    send_to(&*t, &q, past.clone()).await;
    let d = recv_within(
        &mut *rx,
        Duration::from_secs(5),
        "a message scheduled in the past",
    )
    .await;
    assert_eq!(d.envelope.id, past.id);
    ack(d, "the past-scheduled message").await;
}
