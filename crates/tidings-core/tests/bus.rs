//! Bus-level behaviour on the in-memory transport through the test harness: routing,
//! correlation, upcasts, inbox, ordering, request/response, validation, shutdown.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings_core::envelope::headers;
use tidings_core::pipeline::inbox::MemoryInbox;
use tidings_core::transport::{Outgoing, Transport};
use tidings_core::{ConsumeContext, Endpoint, Envelope, Error, Message, SendOptions, TestHarness};

mod common;
use common::*;

#[tokio::test(start_paused = true)]
async fn publish_fans_out_and_correlation_flows_across_three_hops() {
    let h = TestHarness::start(|b| {
        b.endpoint(
            Endpoint::new("orders")
                .handle_fn(|m: OrderPlaced, ctx: ConsumeContext| async move {
                    ctx.send(&ReserveStock {
                        order_id: m.order_id,
                    })
                    .await?;
                    Ok(())
                })
                .sends::<ReserveStock>(),
        )
        .endpoint(
            Endpoint::new("inventory")
                .handle_fn(|m: ReserveStock, ctx: ConsumeContext| async move {
                    ctx.publish(&StockReserved {
                        order_id: m.order_id,
                    })
                    .await?;
                    Ok(())
                })
                .sends::<StockReserved>(),
        )
        .endpoint(Endpoint::new("analytics").handle_fn(|_: OrderPlaced, _| async { Ok(()) }))
        .endpoint(Endpoint::new("shipping").handle_fn(|_: StockReserved, _| async { Ok(()) }))
        .sends::<OrderPlaced>()
    })
    .await
    .unwrap();
    h.bus
        .publish_with(
            &OrderPlaced {
                order_id: 7,
                total_cents: 100,
            },
            SendOptions::default().correlation_id("corr-7"),
        )
        .await
        .unwrap();
    assert!(
        h.wait_until(WAIT, |h| h.consumed("test.stock-reserved").len() == 1)
            .await
    );
    assert_eq!(
        h.consumed("test.order-placed").len(),
        2,
        "orders and analytics each get one copy"
    );
    let placed = &h.envelopes::<OrderPlaced>()[0];
    let reserve = &h.envelopes::<ReserveStock>()[0];
    let reserved = &h.envelopes::<StockReserved>()[0];
    for e in [placed, reserve, reserved] {
        assert_eq!(e.correlation_id.as_deref(), Some("corr-7"));
        assert_eq!(e.conversation_id, Some(placed.id));
    }
    assert_eq!(reserve.causation_id, Some(placed.id));
    assert_eq!(reserved.causation_id, Some(reserve.id));
    assert_eq!(reserve.source_endpoint.as_deref(), Some("orders"));
    let trace = |e: &Envelope| e.header(headers::TRACEPARENT).unwrap()[3..35].to_string();
    assert_eq!(
        trace(placed),
        trace(reserved),
        "one trace id across the hops"
    );
    assert_eq!(h.sent::<ReserveStock>(), vec![ReserveStock { order_id: 7 }]);
}

#[tokio::test(start_paused = true)]
async fn v1_is_upcast_to_v2() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("billing")
                .handle_fn(move |m: OrderPlaced, _| {
                    let g = g.clone();
                    async move {
                        g.lock().unwrap().push(m);
                        Ok(())
                    }
                })
                .upcast::<OrderPlacedV1, OrderPlaced>(),
        )
    })
    .await
    .unwrap();
    h.bus.publish(&OrderPlacedV1 { order_id: 3 }).await.unwrap();
    h.bus
        .publish(&OrderPlaced {
            order_id: 4,
            total_cents: 9,
        })
        .await
        .unwrap();
    assert!(h.wait_until(WAIT, |_| got.lock().unwrap().len() == 2).await);
    let mut v = got.lock().unwrap().clone();
    v.sort_by_key(|m| m.order_id);
    assert_eq!(
        v,
        vec![
            OrderPlaced {
                order_id: 3,
                total_cents: 0
            },
            OrderPlaced {
                order_id: 4,
                total_cents: 9
            }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn inbox_skips_a_duplicate_delivery() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("notifications")
                .inbox(Arc::new(MemoryInbox::default()))
                .handle_fn(move |_: ReserveStock, _| {
                    c.fetch_add(1, Ordering::SeqCst);
                    async { Ok(()) }
                }),
        )
    })
    .await
    .unwrap();
    let env = h
        .bus
        .producer()
        .envelope(&ReserveStock { order_id: 1 }, SendOptions::default())
        .unwrap();
    for _ in 0..3 {
        h.bus
            .send_raw(vec![Outgoing::to_queue("notifications", env.clone())])
            .await
            .unwrap();
    }
    assert!(
        h.wait_until(WAIT, |h| h.consumed("test.reserve-stock").len() == 3)
            .await
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the handler ran once for three deliveries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_key_order_is_kept_with_concurrency_16() {
    let seen = Arc::new(Mutex::new(std::collections::HashMap::<u32, Vec<u32>>::new()));
    let active = Arc::new(Mutex::new(std::collections::HashSet::<u32>::new()));
    let (s, a) = (seen.clone(), active.clone());
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("ordered")
                .ordered(true)
                .concurrency(16)
                .handle_fn(move |m: Keyed, _| {
                    let (s, a) = (s.clone(), a.clone());
                    async move {
                        assert!(
                            a.lock().unwrap().insert(m.key),
                            "two messages of key {} at once",
                            m.key
                        );
                        tokio::time::sleep(Duration::from_micros(u64::from(m.seq * 37 % 500)))
                            .await;
                        s.lock().unwrap().entry(m.key).or_default().push(m.seq);
                        a.lock().unwrap().remove(&m.key);
                        Ok(())
                    }
                }),
        )
    })
    .await
    .unwrap();
    for seq in 0..25 {
        for key in 0..20 {
            h.bus
                .send_with(
                    &Keyed { key, seq },
                    SendOptions::default().partition_key(key.to_string()),
                )
                .await
                .unwrap();
        }
    }
    assert!(
        h.wait_until(WAIT, |h| h.consumed("test.keyed").len() == 500)
            .await
    );
    for (key, seqs) in seen.lock().unwrap().iter() {
        assert_eq!(seqs, &(0..25).collect::<Vec<_>>(), "key {key} out of order");
    }
    assert!(h.dead_letters().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn request_response_and_timeout() {
    let h = TestHarness::start(|b| {
        b.endpoint(
            Endpoint::new("pinger").handle_fn(|m: Ping, ctx: ConsumeContext| async move {
                if m.n == 0 {
                    return Ok(()); // never answers
                }
                ctx.respond(&Pong { n: m.n + 1 }).await?;
                Ok(())
            }),
        )
    })
    .await
    .unwrap();
    let pong: Pong = h
        .bus
        .request(&Ping { n: 41 }, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(pong, Pong { n: 42 });
    let err = h
        .bus
        .request::<Ping, Pong>(&Ping { n: 0 }, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RequestTimeout { .. }), "{err}");
    assert!(err.to_string().contains("no response within 5s"), "{err}");

    // The reply queue lives as long as the bus: shutdown deletes it.
    let replies = |stats: Vec<tidings_core::transport::QueueStats>| {
        stats
            .iter()
            .filter(|s| s.queue.contains(".replies."))
            .count()
    };
    let transport = h.bus.transport().clone();
    assert_eq!(replies(transport.stats().await.unwrap()), 1);
    h.bus.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        replies(transport.stats().await.unwrap()),
        0,
        "reply queue left behind"
    );
}

#[tokio::test]
async fn topology_errors_are_found_before_start() {
    let t: Arc<dyn Transport> = Arc::new(tidings_core::transport::memory::MemoryTransport::new());
    let two = tidings_core::Bus::builder(t.clone())
        .endpoint(Endpoint::new("a").handle_fn(|_: ReserveStock, _| async { Ok(()) }))
        .endpoint(Endpoint::new("b").handle_fn(|_: ReserveStock, _| async { Ok(()) }))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(two.contains("received by two endpoints"), "{two}");
    let none = tidings_core::Bus::builder(t.clone())
        .endpoint(Endpoint::new("a").handle_fn(|_: Pong, _| async { Ok(()) }))
        .sends::<Ping>()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(none.contains("no endpoint receives it"), "{none}");

    #[derive(Debug, Serialize, Deserialize, Message)]
    #[message(name = "test.ping", kind = "command")]
    struct PingClone {
        n: u32,
    }
    let dup = tidings_core::Bus::builder(t.clone())
        .endpoint(Endpoint::new("a").handle_fn(|_: Ping, _| async { Ok(()) }))
        .endpoint(Endpoint::new("c").handle_fn(|_: PingClone, _| async { Ok(()) }))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(dup.contains("claimed by two Rust types"), "{dup}");
    let report = tidings_core::Bus::builder(t)
        .endpoint(Endpoint::new("a").handle_fn(|_: Pong, _| async { Ok(()) }))
        .sends::<Ping>()
        .route::<Ping>("elsewhere")
        .validate()
        .unwrap();
    assert!(
        report.warnings.iter().any(|w| w.contains("test.pong")),
        "{:?}",
        report.warnings
    );
    assert!(report
        .to_mermaid()
        .contains("app[app] -->|test.ping| elsewhere[elsewhere]"));
}

#[tokio::test]
async fn sending_a_command_with_no_route_fails_clearly() {
    let h = TestHarness::start(|b| {
        b.endpoint(Endpoint::new("a").handle_fn(|_: Pong, _| async { Ok(()) }))
    })
    .await
    .unwrap();
    let err = h.bus.send(&Ping { n: 1 }).await.unwrap_err();
    assert!(matches!(err, Error::NoRoute(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_in_flight_handlers() {
    let done = Arc::new(AtomicU32::new(0));
    let d = done.clone();
    let h = TestHarness::start(move |b| {
        b.endpoint(Endpoint::new("slow").handle_fn(move |_: ReserveStock, _| {
            let d = d.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }))
    })
    .await
    .unwrap();
    h.bus.send(&ReserveStock { order_id: 1 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.bus.shutdown(Duration::from_secs(10)).await);
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "the in-flight handler finished"
    );
    assert!(matches!(
        h.bus.send(&ReserveStock { order_id: 2 }).await,
        Err(Error::Shutdown)
    ));
}
