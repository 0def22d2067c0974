//! Every admin route, driven with tower `oneshot` (no server).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tidings_admin::{router, AdminState, DeadLetterView, QueueView};
use tidings_core::FaultReason;
use tower::ServiceExt;

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, String) {
    call_with(app, method, uri, body, None).await
}

async fn call_with(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() || method != "GET" {
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn queues_and_dead_letter_listing() {
    let t = common::transport().await;
    let id = common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "c-1",
    )
    .await;
    common::dead_letter(&t, "payments", "shop.charge", FaultReason::Panicked, "c-2").await;
    let app = router(AdminState::new(t.clone()));

    let (s, body) = call(&app, "GET", "/queues", None).await;
    assert_eq!(s, StatusCode::OK);
    let qs: Vec<QueueView> = serde_json::from_str(&body).unwrap();
    let orders = qs.iter().find(|q| q.queue == "orders").unwrap();
    assert_eq!(orders.error_depth, 1);
    assert_eq!(orders.ready, 0);

    let (s, body) = call(&app, "GET", "/dlq", None).await;
    assert_eq!(s, StatusCode::OK);
    let all: Vec<DeadLetterView> = serde_json::from_str(&body).unwrap();
    assert_eq!(all.len(), 2);

    for (uri, expect) in [
        ("/dlq?endpoint=orders", 1),
        ("/dlq?type=shop.charge", 1),
        ("/dlq?reason=panicked", 1),
        ("/dlq?reason=timed-out", 0),
        ("/dlq?since=1h", 2),
        ("/dlq?since=2000-01-01T00:00:00Z&limit=1", 1),
        ("/dlq?correlation_id=c-1", 1),
        ("/dlq?correlation_id=nope", 0),
        (&format!("/dlq?ids={id}") as &str, 1),
    ] {
        let (s, body) = call(&app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {body}");
        let v: Vec<DeadLetterView> = serde_json::from_str(&body).unwrap();
        assert_eq!(v.len(), expect, "{uri}");
    }
    let (s, body) = call(&app, "GET", "/dlq?since=yesterday", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid duration"), "{body}");

    let (s, body) = call(&app, "GET", "/dlq/summary", None).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 2);
    assert_eq!(v["by_reason"]["handler-failed"], 1);
    assert_eq!(v["by_endpoint"]["payments"], 1);
}

#[tokio::test]
async fn show_one_dead_letter() {
    let t = common::transport().await;
    let id = common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "c-1",
    )
    .await;
    let app = router(AdminState::new(t));
    let (s, body) = call(&app, "GET", &format!("/dlq/{id}"), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let d: DeadLetterView = serde_json::from_str(&body).unwrap();
    assert_eq!(d.id, id);
    assert_eq!(d.reason.as_deref(), Some("handler-failed"));
    assert_eq!(d.error.as_deref(), Some("stock service said no"));
    assert_eq!(d.body["order_id"], 42);
    let (s, _) = call(&app, "GET", &format!("/dlq/{}", uuid::Uuid::now_v7()), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, "GET", "/dlq/not-a-uuid", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn replay_moves_back_and_dry_run_does_not() {
    let t = common::transport().await;
    let id = common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "c-1",
    )
    .await;
    common::dead_letter(&t, "payments", "shop.charge", FaultReason::Panicked, "c-2").await;
    let app = router(AdminState::new(t.clone()));

    let (s, body) = call(
        &app,
        "POST",
        "/dlq/replay",
        Some(r#"{"endpoint":"orders","dry_run":true}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["ids"][0], id.to_string());
    assert_eq!(t.dead_letters(&Default::default()).await.unwrap().len(), 2);

    let (s, body) = call(
        &app,
        "POST",
        "/dlq/replay",
        Some(&format!(r#"{{"ids":["{id}"]}}"#)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["replayed"], 1);
    let stats = t.stats().await.unwrap();
    let orders = stats.iter().find(|q| q.queue == "orders").unwrap();
    assert_eq!((orders.ready, orders.error_depth), (1, 0));

    // By correlation id, into another queue.
    let (s, body) = call(
        &app,
        "POST",
        "/dlq/replay",
        Some(r#"{"correlation_id":"c-2","to":"orders"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let stats = t.stats().await.unwrap();
    let orders = stats.iter().find(|q| q.queue == "orders").unwrap();
    assert_eq!(orders.ready, 2);

    let (s, body) = call(&app, "POST", "/dlq/replay", Some("{not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = call(
        &app,
        "POST",
        "/dlq/replay",
        Some(r#"{"all":true,"to":"nowhere"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn purge_needs_confirm() {
    let t = common::transport().await;
    common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "c-1",
    )
    .await;
    common::dead_letter(&t, "payments", "shop.charge", FaultReason::Panicked, "c-2").await;
    let app = router(AdminState::new(t.clone()));
    let (s, body) = call(&app, "DELETE", "/dlq?endpoint=orders", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("confirm=true"), "{body}");
    assert_eq!(t.dead_letters(&Default::default()).await.unwrap().len(), 2);
    let (s, body) = call(&app, "DELETE", "/dlq?endpoint=orders&confirm=true", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["purged"], 1);
    let left = t.dead_letters(&Default::default()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].queue, "payments");
}

#[tokio::test]
async fn probes_dashboard_and_metrics() {
    let t = common::transport().await;
    common::dead_letter(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::HandlerFailed,
        "c-1",
    )
    .await;
    let app = router(AdminState::new(t.clone()));
    assert_eq!(
        call(&app, "GET", "/healthz", None).await,
        (StatusCode::OK, "ok".into())
    );
    let (s, body) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, r#"{"status":"ready"}"#);
    let (s, body) = call(&app, "GET", "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("<title>Tidings admin</title>") && body.contains("only"));
    let (s, body) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no recorder installed: {body}");

    let handle = tidings_admin::install_recorder().unwrap();
    // Installing twice hands back the same recorder.
    tidings_admin::install_recorder().unwrap();
    let app = router(AdminState::new(t.clone()).metrics(handle));
    let (s, body) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        body.contains("tidings_error_queue_depth{queue=\"orders\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("tidings_queue_depth{queue=\"payments\"} 0"),
        "{body}"
    );
    // Help text, and durations as histograms (buckets add up across instances).
    assert!(body.contains("# HELP tidings_queue_depth "), "{body}");
    metrics::histogram!(
        tidings_core::telemetry::names::HANDLER_SECONDS,
        "endpoint" => "orders"
    )
    .record(0.003);
    let (_, body) = call(&app, "GET", "/metrics", None).await;
    assert!(
        body.contains(
            "tidings_handler_duration_seconds_bucket{endpoint=\"orders\",le=\"0.005\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains("# HELP tidings_handler_duration_seconds "),
        "{body}"
    );

    let app = router(AdminState::new(std::sync::Arc::new(common::DownTransport)));
    let (s, body) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Ready or not, without internals (the reason is logged).
    assert_eq!(body, r#"{"status":"unavailable"}"#);
    assert_eq!(call(&app, "GET", "/healthz", None).await.0, StatusCode::OK);
    let (s, body) = call(&app, "GET", "/queues", None).await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "transient errors are 503: {body}"
    );
}

#[tokio::test]
async fn token_is_required_when_set() {
    let t = common::transport().await;
    let app = router(AdminState::new(t).token(Some("s3cret".into())));
    for uri in ["/queues", "/dlq", "/dlq/summary", "/metrics"] {
        let (s, body) = call(&app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(body.contains("bearer token"), "{body}");
        let (s, _) = call_with(&app, "GET", uri, None, Some("wrong")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (s, _) = call(&app, "DELETE", "/dlq?confirm=true", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, "POST", "/dlq/replay", Some("{}")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call_with(&app, "GET", "/queues", None, Some("s3cret")).await;
    assert_eq!(s, StatusCode::OK);
    // Probes and the dashboard shell stay open.
    for uri in ["/", "/healthz", "/readyz"] {
        assert_eq!(
            call(&app, "GET", uri, None).await.0,
            StatusCode::OK,
            "{uri}"
        );
    }
}
