//! The HTTP API through tower's `oneshot`: 202 + Location, 400 problem+json, idempotency,
//! correlation id echo, 404, the OpenAPI document.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use orderflow::api::{app, AppState};
use orderflow::system::{Config, System};
use serde_json::Value;
use tidings_core::transport::memory::MemoryTransport;
use tower::ServiceExt;

async fn start() -> (System, Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(Config::new(dir.path()), Arc::new(MemoryTransport::new()))
        .await
        .unwrap();
    let router = app(AppState {
        db: system.db.clone(),
        producer: system.bus.producer().clone(),
    });
    (system, router, dir)
}

fn post(body: &str) -> axum::http::request::Builder {
    let _ = body;
    Request::post("/orders").header(header::CONTENT_TYPE, "application/json")
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, v)
}

const GOOD: &str =
    r#"{"customer_id":"c-1","lines":[{"product_id":"P-001","quantity":2}],"notify_via":"sms"}"#;

#[tokio::test]
async fn placing_an_order_answers_202_with_location_and_echoes_the_correlation_id() {
    let (system, router, _dir) = start().await;
    let req = post(GOOD)
        .header("x-correlation-id", "corr-42")
        .body(Body::from(GOOD))
        .unwrap();
    let (status, headers, body) = call(&router, req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(headers[header::LOCATION], format!("/orders/{id}").as_str());
    assert_eq!(headers["x-correlation-id"], "corr-42");
    assert_eq!(body["status"], "Pending");
    assert_eq!(body["total_cents"], 4980);
    let corr: String =
        sqlx::query_scalar("SELECT correlation_id FROM api_orders WHERE order_id = ?")
            .bind(&id)
            .fetch_one(&system.db.read)
            .await
            .unwrap();
    assert_eq!(corr, "corr-42");

    // without a correlation id one is generated and echoed
    let (_, headers, _) = call(&router, post(GOOD).body(Body::from(GOOD)).unwrap()).await;
    assert!(!headers["x-correlation-id"].is_empty());

    // GET follows the order
    let (status, headers, body) = call(
        &router,
        Request::get(format!("/orders/{id}"))
            .header("x-correlation-id", "c2")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-correlation-id"], "c2");
    assert_eq!(body["id"], id.as_str());
    system.shutdown().await;
}

#[tokio::test]
async fn invalid_orders_get_400_problem_json_saying_what_is_wrong() {
    let (system, router, _dir) = start().await;
    let cases = [
        ("{not json", "not valid JSON"),
        (
            r#"{"lines":[{"product_id":"P-001","quantity":1}]}"#,
            "missing field `customer_id`",
        ),
        (
            r#"{"customer_id":"c","lines":[{"product_id":"P-001","quantity":0}]}"#,
            "lines[0].quantity must be at least 1",
        ),
        (
            r#"{"customer_id":"c","lines":[{"product_id":"NOPE","quantity":1}]}"#,
            "lines[0].product_id `NOPE` is not in the catalog",
        ),
        (r#"{"customer_id":"c","lines":[]}"#, "at least one line"),
    ];
    for (body, expect) in cases {
        let (status, headers, problem) =
            call(&router, post(body).body(Body::from(body)).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(problem["status"], 400);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(expect), "{body}: {detail}");
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_orders")
        .fetch_one(&system.db.read)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing was stored");
    system.shutdown().await;
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_order() {
    let (system, router, _dir) = start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let req = post(GOOD)
            .header("idempotency-key", "k-1")
            .body(Body::from(GOOD))
            .unwrap();
        let (status, headers, body) = call(&router, req).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(headers.contains_key(header::LOCATION));
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_orders")
        .fetch_one(&system.db.read)
        .await
        .unwrap();
    assert_eq!(n, 1, "one order for one key");
    let other = post(GOOD)
        .header("idempotency-key", "k-2")
        .body(Body::from(GOOD))
        .unwrap();
    let (_, _, body) = call(&router, other).await;
    assert_ne!(body["id"].as_str().unwrap(), ids[0]);
    system.shutdown().await;
}

#[tokio::test]
async fn unknown_orders_are_404_problem_json() {
    let (system, router, _dir) = start().await;
    for path in [
        "/orders/0195f3c2-0000-7000-8000-000000000000",
        "/orders/not-a-uuid",
    ] {
        let (status, headers, problem) =
            call(&router, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(problem["status"], 404);
    }
    system.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_response() {
    let (system, router, _dir) = start().await;
    let (status, _, doc) = call(
        &router,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let post = &doc["paths"]["/orders"]["post"]["responses"];
    for code in ["202", "400", "500"] {
        assert!(post.get(code).is_some(), "POST /orders {code} missing");
    }
    assert!(post["400"]["content"]
        .get("application/problem+json")
        .is_some());
    assert!(post["202"]["headers"].get("Location").is_some());
    let get = &doc["paths"]["/orders/{id}"]["get"]["responses"];
    for code in ["200", "404", "500"] {
        assert!(get.get(code).is_some(), "GET /orders/{{id}} {code} missing");
    }
    assert!(doc["components"]["schemas"].get("Problem").is_some());
    system.shutdown().await;
}
