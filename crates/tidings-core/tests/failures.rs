//! Failure handling on the in-memory transport: bad input, redelivery schedule, permanent
//! errors, expiry, oversize, panicking / hanging / flaky handlers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_core::envelope::headers;
use tidings_core::transport::Outgoing;
use tidings_core::{
    ConsumeContext, Endpoint, Envelope, HandlerError, Redelivery, SendOptions, TestHarness,
};

mod common;
use common::*;

#[tokio::test(start_paused = true)]
async fn malformed_body_goes_to_error_queue_and_the_next_message_flows() {
    let h = TestHarness::start(|b| {
        b.endpoint(Endpoint::new("inventory").handle_fn(|_: ReserveStock, _| async { Ok(()) }))
    })
    .await
    .unwrap();
    let bad = Envelope::new("test.reserve-stock", 1, "{not json");
    h.bus
        .send_raw(vec![Outgoing::to_queue("inventory", bad.clone())])
        .await
        .unwrap();
    h.bus.send(&ReserveStock { order_id: 1 }).await.unwrap();
    assert!(
        h.wait_until(WAIT, |h| h.consumed("test.reserve-stock").len() == 1)
            .await
    );
    let dls = h.dead_letters().await.unwrap();
    assert_eq!(dls.len(), 1);
    assert_eq!(dls[0].envelope.id, bad.id);
    assert_eq!(
        dls[0].envelope.header(headers::FAULT_REASON),
        Some("undeserializable")
    );
    assert_eq!(
        dls[0].envelope.header(headers::FAULT_ORIGINAL_QUEUE),
        Some("inventory")
    );
    assert!(dls[0]
        .envelope
        .header(headers::FAULT_ERROR)
        .unwrap()
        .contains("cannot decode"));
}

#[tokio::test(start_paused = true)]
async fn unknown_version_goes_to_error_queue_with_reason() {
    let h = TestHarness::start(|b| {
        b.endpoint(Endpoint::new("inventory").handle_fn(|_: ReserveStock, _| async { Ok(()) }))
    })
    .await
    .unwrap();
    let v9 = Envelope::new("test.reserve-stock", 9, "{\"order_id\":1}");
    h.bus
        .send_raw(vec![Outgoing::to_queue("inventory", v9)])
        .await
        .unwrap();
    assert!(
        h.wait_until(WAIT, |h| h.faulted("test.reserve-stock").len() == 1)
            .await
    );
    let dl = &h.dead_letters().await.unwrap()[0];
    assert_eq!(
        dl.envelope.header(headers::FAULT_REASON),
        Some("unknown-type")
    );
    assert!(dl
        .envelope
        .header(headers::FAULT_ERROR)
        .unwrap()
        .contains("unknown version"));
}

#[tokio::test(start_paused = true)]
async fn transient_failures_follow_the_redelivery_schedule_then_dead_letter() {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let a = attempts.clone();
    let start = tokio::time::Instant::now();
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("payments")
                .redelivery(Redelivery::intervals([
                    Duration::from_secs(60),
                    Duration::from_secs(300),
                ]))
                .handle_fn(move |_: ReserveStock, ctx: ConsumeContext| {
                    let a = a.clone();
                    async move {
                        a.lock()
                            .unwrap()
                            .push((start.elapsed().as_secs(), ctx.delivery_count()));
                        Err(HandlerError::transient("gateway down"))
                    }
                }),
        )
    })
    .await
    .unwrap();
    h.bus.send(&ReserveStock { order_id: 1 }).await.unwrap();
    assert!(
        h.wait_until(Duration::from_secs(600), |h| h
            .faulted("test.reserve-stock")
            .len()
            == 1)
            .await
    );
    let seen = attempts.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(
        seen[1].0 >= 60 && seen[1].0 < 62,
        "first redelivery after 60 s: {seen:?}"
    );
    assert!(
        seen[2].0 >= 360 && seen[2].0 < 363,
        "second after 300 s more: {seen:?}"
    );
    let dl = &h.dead_letters().await.unwrap()[0];
    assert_eq!(dl.envelope.header(headers::FAULT_REDELIVERIES), Some("2"));
    assert_eq!(dl.envelope.header(headers::FAULT_KIND), Some("transient"));
    let first = dl.envelope.header(headers::FAULT_FIRST_FAILURE).unwrap();
    let last = dl.envelope.header(headers::FAULT_LAST_FAILURE).unwrap();
    assert!(first <= last);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_skip_redelivery() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("payments").handle_fn(move |_: ReserveStock, _| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Err(HandlerError::permanent("card number invalid")) }
            }),
        )
    })
    .await
    .unwrap();
    h.bus.send(&ReserveStock { order_id: 1 }).await.unwrap();
    assert!(
        h.wait_until(WAIT, |h| h.faulted("test.reserve-stock").len() == 1)
            .await
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let dl = &h.dead_letters().await.unwrap()[0];
    assert_eq!(
        dl.envelope.header(headers::FAULT_REASON),
        Some("handler-failed")
    );
    assert_eq!(
        dl.envelope.header(headers::FAULT_ERROR),
        Some("card number invalid")
    );
}

#[tokio::test(start_paused = true)]
async fn expired_messages_are_not_handled() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("inventory").handle_fn(move |_: ReserveStock, _| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            }),
        )
    })
    .await
    .unwrap();
    let opts = SendOptions {
        expires_at: Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
        ..SendOptions::default()
    };
    h.bus
        .send_with(&ReserveStock { order_id: 1 }, opts)
        .await
        .unwrap();
    assert!(
        h.wait_until(WAIT, |h| h
            .observed()
            .iter()
            .any(|o| o.outcome == tidings_core::observe::Outcome::Expired))
            .await
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn oversize_message_goes_to_error_queue() {
    let h = TestHarness::start(|b| {
        b.endpoint(
            Endpoint::new("inventory")
                .max_message_size(64)
                .handle_fn(|_: ReserveStock, _| async { Ok(()) }),
        )
    })
    .await
    .unwrap();
    let big = Envelope::new(
        "test.reserve-stock",
        1,
        format!("{{\"order_id\":1,\"pad\":\"{}\"}}", "x".repeat(200)),
    );
    h.bus
        .send_raw(vec![Outgoing::to_queue("inventory", big)])
        .await
        .unwrap();
    assert!(
        h.wait_until(WAIT, |h| h.faulted("test.reserve-stock").len() == 1)
            .await
    );
    let dl = &h.dead_letters().await.unwrap()[0];
    assert_eq!(dl.envelope.header(headers::FAULT_REASON), Some("oversize"));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_goes_to_the_error_queue_and_the_endpoint_keeps_consuming() {
    let h = TestHarness::start(|b| {
        b.endpoint(
            Endpoint::new("fragile").handle_fn(|m: ReserveStock, _| async move {
                if m.order_id == 13 {
                    panic!("unlucky order {}", m.order_id);
                }
                Ok(())
            }),
        )
    })
    .await
    .unwrap();
    h.bus.send(&ReserveStock { order_id: 13 }).await.unwrap();
    h.bus.send(&ReserveStock { order_id: 14 }).await.unwrap();
    assert!(
        h.wait_until(WAIT, |h| h.consumed("test.reserve-stock").len() == 1
            && h.faulted("test.reserve-stock").len() == 1)
            .await
    );
    let dl = &h.dead_letters().await.unwrap()[0];
    assert_eq!(dl.envelope.header(headers::FAULT_REASON), Some("panicked"));
    assert!(dl
        .envelope
        .header(headers::FAULT_ERROR)
        .unwrap()
        .contains("unlucky order 13"));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_handler_times_out_is_retried_and_then_dead_lettered() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("hangs")
                .timeout(Duration::from_secs(2))
                .retry(tidings_core::pipeline::retry::Intervals(
                    vec![Duration::from_millis(100); 2],
                ))
                .redelivery(Redelivery::intervals([Duration::from_secs(10)]))
                .handle_fn(move |m: ReserveStock, _| {
                    c.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if m.order_id == 1 {
                            std::future::pending::<()>().await;
                        }
                        Ok(())
                    }
                }),
        )
    })
    .await
    .unwrap();
    h.bus.send(&ReserveStock { order_id: 1 }).await.unwrap();
    h.bus.send(&ReserveStock { order_id: 2 }).await.unwrap();
    assert!(
        h.wait_until(WAIT, |h| h.faulted("test.reserve-stock").len() == 1)
            .await
    );
    assert_eq!(
        h.consumed("test.reserve-stock").len(),
        1,
        "the other message still flowed"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3 * 2 + 1,
        "3 attempts x 2 deliveries + 1"
    );
    let dl = &h.dead_letters().await.unwrap()[0];
    assert_eq!(dl.envelope.header(headers::FAULT_REASON), Some("timed-out"));
    assert_eq!(dl.envelope.header(headers::FAULT_ATTEMPTS), Some("3"));
    assert_eq!(dl.envelope.header(headers::FAULT_REDELIVERIES), Some("1"));
}

#[tokio::test(start_paused = true)]
async fn immediate_retries_recover_a_flaky_handler() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("flaky")
                .retry(tidings_core::pipeline::retry::Intervals(
                    vec![Duration::from_millis(50); 3],
                ))
                .handle_fn(move |_: ReserveStock, ctx: ConsumeContext| {
                    c.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if ctx.attempt() < 3 {
                            Err(HandlerError::transient("flaky"))
                        } else {
                            Ok(())
                        }
                    }
                }),
        )
    })
    .await
    .unwrap();
    h.bus.send(&ReserveStock { order_id: 1 }).await.unwrap();
    assert!(
        h.wait_until(WAIT, |h| h.consumed("test.reserve-stock").len() == 1)
            .await
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(h.observed().len(), 1, "one delivery, settled once");
}
