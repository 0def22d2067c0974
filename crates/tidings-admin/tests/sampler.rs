//! The sampler sets the queue gauges on its own (nobody scrapes `/metrics` here): on the
//! embedded SQLite transport a backlog of N makes `tidings_queue_depth` rise to N and the
//! oldest-age gauge rise above zero; draining it brings both back to zero. And the charts'
//! history holds the same depths.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tidings_admin::{install_recorder, router, AdminState, SamplerConfig};
use tidings_core::transport::{Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use tidings_core::Envelope;
use tidings_sqlite::{SqliteConfig, SqliteTransport};
use tower::ServiceExt;

/// The value of `name{queue="<queue>"}` in the rendered text, if present.
fn gauge(handle: &PrometheusHandle, name: &str, queue: &str) -> Option<f64> {
    let prefix = format!("{name}{{queue=\"{queue}\"}} ");
    handle
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
}

/// Waits (5 s at most) until the gauge satisfies `pred`; returns its last value.
async fn wait_gauge(
    handle: &PrometheusHandle,
    name: &str,
    queue: &str,
    pred: impl Fn(f64) -> bool,
) -> Option<f64> {
    let mut last = None;
    for _ in 0..100 {
        last = gauge(handle, name, queue);
        if last.is_some_and(&pred) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_gauges_follow_a_backlog_without_a_scrape() {
    let handle = install_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t: Arc<dyn Transport> = Arc::new(
        SqliteTransport::connect(SqliteConfig::new(dir.path().join("q.db")))
            .await
            .unwrap(),
    );
    let queue = format!("backlog-{}", uuid::Uuid::now_v7().simple());
    t.declare(&Topology {
        queues: vec![QueueSpec {
            name: queue.clone(),
            ..Default::default()
        }],
    })
    .await
    .unwrap();

    // The sampler starts with the router; polls stats every 100 ms. Nothing calls /metrics.
    let state = AdminState::new(t.clone())
        .metrics(handle.clone())
        .sampler(SamplerConfig::default().stats_every(Duration::from_millis(100)));
    let app = router(state);

    let depth = tidings_core::telemetry::names::QUEUE_DEPTH;
    let age = tidings_core::telemetry::names::OLDEST_AGE;
    let seen = wait_gauge(&handle, depth, &queue, |v| v == 0.0).await;
    assert_eq!(seen, Some(0.0), "the empty queue's gauge is set");

    const N: usize = 40;
    let batch = (0..N)
        .map(|i| Outgoing::to_queue(&queue, Envelope::new("t.backlog", 1, format!("{i}"))))
        .collect();
    t.send(batch).await.unwrap();
    let seen = wait_gauge(&handle, depth, &queue, |v| v == N as f64).await;
    assert_eq!(seen, Some(N as f64), "depth rose to the backlog");
    let seen = wait_gauge(&handle, age, &queue, |v| v > 0.0).await;
    assert!(seen.is_some_and(|v| v > 0.0), "oldest age rose: {seen:?}");

    // Drain it: take and ack every message.
    let mut rx = t.receive(&queue, ReceiveOptions::default()).await.unwrap();
    for _ in 0..N {
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        d.ack().await.unwrap();
    }
    rx.close().await.unwrap();
    let seen = wait_gauge(&handle, depth, &queue, |v| v == 0.0).await;
    assert_eq!(seen, Some(0.0), "depth fell back after the drain");
    let seen = wait_gauge(&handle, age, &queue, |v| v == 0.0).await;
    assert_eq!(seen, Some(0.0), "oldest age fell back after the drain");

    // The dashboard's history saw the rise and the fall.
    let resp = app
        .oneshot(
            axum::http::Request::get("/history")
                .header("host", "127.0.0.1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let h: tidings_admin::HistoryView = serde_json::from_slice(&body).unwrap();
    let ready = &h.depth[&queue].ready;
    assert_eq!(ready.len(), h.depth_t.len());
    assert!(ready.contains(&Some(N as u64)), "{ready:?}");
    assert_eq!(ready.last(), Some(&Some(0)), "{ready:?}");
    assert!((h.stats_seconds - 0.1).abs() < 1e-9);
}

#[tokio::test]
async fn a_disabled_sampler_sets_nothing_and_keeps_no_history() {
    let t: Arc<dyn Transport> = Arc::new(tidings_core::transport::memory::MemoryTransport::new());
    let app = router(AdminState::new(t).sampler(SamplerConfig::disabled()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = app
        .oneshot(
            axum::http::Request::get("/endpoints")
                .header("host", "127.0.0.1")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let e: tidings_admin::EndpointsView = serde_json::from_slice(&body).unwrap();
    assert!(!e.sampling && !e.rates && e.endpoints.is_empty(), "{e:?}");
}
