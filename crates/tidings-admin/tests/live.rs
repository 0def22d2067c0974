//! `GET /endpoints` and `GET /history` against a real bus on the memory transport: the
//! journal's counters become rates (handled, failed), the Prometheus histogram a handler
//! latency, the envelopes' send times a critical time; the rates add up to the counts.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use serde::{Deserialize, Serialize};
use tidings_admin::{
    install_recorder, router, AdminState, EndpointsView, HistoryView, MessageJournal, SamplerConfig,
};
use tidings_core::{Bus, Endpoint, HandlerError, Message, Redelivery};
use tower::ServiceExt;

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "shop.work", kind = "command")]
struct Work {
    ok: bool,
}

async fn get<T: serde::de::DeserializeOwned>(app: &axum::Router, uri: &str) -> T {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{uri}");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_latency_and_critical_time_of_a_running_bus() {
    let handle = install_recorder().unwrap();
    let t = common::transport().await;
    let journal = MessageJournal::new();
    let bus = Bus::builder(t.clone())
        .endpoint(
            Endpoint::new("orders")
                .concurrency(1)
                .redelivery(Redelivery::none())
                .handle_fn(|m: Work, _| async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if m.ok {
                        Ok(())
                    } else {
                        Err(HandlerError::permanent("no stock for order 7"))
                    }
                }),
        )
        .sends::<Work>()
        .observer(journal.observer())
        .start()
        .await
        .unwrap();
    let state = AdminState::new(t.clone())
        .journal(journal.clone())
        .metrics(handle)
        .sampler(
            SamplerConfig::default()
                .tick(Duration::from_millis(100))
                .stats_every(Duration::from_millis(100)),
        );
    let app = router(state);

    // 30 handled, 6 failed: one at a time, 20 ms each, so the work spans several ticks.
    for i in 0u32..36 {
        bus.send(&Work {
            ok: !i.is_multiple_of(6),
        })
        .await
        .unwrap();
    }

    // While it runs, the endpoint shows a handled rate.
    let mut busy = None;
    for _ in 0..100 {
        let e: EndpointsView = get(&app, "/endpoints").await;
        let orders = e.endpoints.iter().find(|x| x.endpoint == "orders").cloned();
        if orders.as_ref().and_then(|o| o.handled_per_second) > Some(0.0) {
            busy = orders;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let busy = busy.expect("a handled rate while the bus works");
    assert!(
        busy.received_per_second >= busy.handled_per_second,
        "{busy:?}"
    );

    for _ in 0..200 {
        if journal.len() == 36 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let totals = journal.counters();
    let orders = totals.iter().find(|(n, _)| n == "orders").unwrap().1;
    assert_eq!(
        (
            orders.received,
            orders.handled,
            orders.failed,
            orders.dead_lettered
        ),
        (36, 30, 6, 6)
    );
    // Let the sampler see the end, then go quiet for more than RATE_TICKS ticks.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let h: HistoryView = get(&app, "/history").await;
    let s = &h.rates["orders"];
    assert_eq!(h.rates_t.len(), s.handled.len());
    assert_eq!(h.rates_dt.len(), s.handled.len());
    let count = |v: &[Option<f64>]| -> f64 {
        v.iter()
            .zip(&h.rates_dt)
            .map(|(r, dt)| r.unwrap_or(0.0) * dt)
            .sum()
    };
    // The per-tick rates add up to the counts (the sampler started before the first send).
    assert!((count(&s.handled) - 30.0).abs() < 1e-6, "{s:?}");
    assert!((count(&s.failed) - 6.0).abs() < 1e-6, "{s:?}");
    assert!((count(&s.received) - 36.0).abs() < 1e-6, "{s:?}");
    // The handler sleeps 20 ms: the mean latency of every tick with deliveries is at least that.
    let latencies: Vec<f64> = s.handler_ms.iter().flatten().copied().collect();
    assert!(!latencies.is_empty(), "{s:?}");
    assert!(latencies.iter().all(|ms| *ms >= 19.0), "{latencies:?}");
    // Critical time includes the wait in the queue behind the others: at least the handler time.
    let critical: Vec<f64> = s.critical_ms.iter().flatten().copied().collect();
    assert!(critical.iter().all(|ms| *ms >= 19.0), "{critical:?}");
    assert!(
        critical.iter().any(|ms| *ms >= 100.0),
        "queued ones waited: {critical:?}"
    );

    let e: EndpointsView = get(&app, "/endpoints").await;
    assert!(e.sampling && e.rates && e.latency, "{e:?}");
    let orders = e.endpoints.iter().find(|x| x.endpoint == "orders").unwrap();
    assert_eq!(
        orders.handled_per_second,
        Some(0.0),
        "quiet now: {orders:?}"
    );
    assert_eq!(orders.ready, Some(0));
    assert_eq!(orders.error_depth, Some(6));
    assert!(
        e.endpoints.iter().any(|x| x.endpoint == "payments"),
        "queues without traffic are listed"
    );
    bus.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn without_a_journal_there_are_no_rates() {
    let t = common::transport().await;
    let app = router(
        AdminState::new(t).sampler(SamplerConfig::default().stats_every(Duration::from_millis(20))),
    );
    let mut e: EndpointsView = get(&app, "/endpoints").await;
    for _ in 0..100 {
        if !e.endpoints.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        e = get(&app, "/endpoints").await;
    }
    assert!(e.sampling && !e.rates && !e.latency, "{e:?}");
    let orders = e.endpoints.iter().find(|x| x.endpoint == "orders").unwrap();
    assert_eq!(orders.handled_per_second, None);
    assert_eq!(orders.ready, Some(0));
}
