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
    let router = app(AppState::new(
        system.db.clone(),
        system.bus.producer().clone(),
    ));
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
            .fetch_one(system.db.read.sqlite().unwrap())
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
        .fetch_one(system.db.read.sqlite().unwrap())
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
        .fetch_one(system.db.read.sqlite().unwrap())
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

async fn orders(system: &System) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM api_orders")
        .fetch_one(system.db.read.sqlite().unwrap())
        .await
        .unwrap()
}

fn order_with(lines: &str) -> String {
    format!(r#"{{"customer_id":"c-1","lines":[{lines}]}}"#)
}

#[tokio::test]
async fn bounds_on_quantity_lines_strings_and_unknown_fields_are_enforced() {
    let (system, router, _dir) = start().await;
    let line = r#"{"product_id":"P-001","quantity":1}"#;
    let too_many = vec![line; 101].join(",");
    let long_customer = "c".repeat(65);
    let cases = [
        (
            order_with(r#"{"product_id":"P-001","quantity":4294967295}"#),
            "lines[0].quantity must be at most 1000",
        ),
        (
            order_with(r#"{"product_id":"P-001","quantity":4294967296}"#),
            "does not describe an order",
        ),
        (
            order_with(r#"{"product_id":"P-001","quantity":-1}"#),
            "does not describe an order",
        ),
        (order_with(&too_many), "at most 100 are allowed"),
        (
            format!(r#"{{"customer_id":"{long_customer}","lines":[{line}]}}"#),
            "customer_id must be 1–64 characters",
        ),
        (
            format!(r#"{{"customer_id":"  ","lines":[{line}]}}"#),
            "customer_id must be 1–64 characters",
        ),
        (
            order_with(&format!(
                r#"{{"product_id":"{}","quantity":1}}"#,
                "P".repeat(33)
            )),
            "lines[0].product_id must be 1–32 characters",
        ),
        (
            format!(r#"{{"customer_id":"c","lines":[{line}],"ship_to":""}}"#),
            "two-letter ISO country code",
        ),
        (
            format!(r#"{{"customer_id":"c","lines":[{line}],"ship_to":"de"}}"#),
            "two-letter ISO country code",
        ),
        (
            format!(r#"{{"customer_id":"c","lines":[{line}],"coupon":"FREE"}}"#),
            "unknown field `coupon`",
        ),
        (
            order_with(r#"{"product_id":"P-001","quantity":1,"price_cents":0}"#),
            "unknown field `price_cents`",
        ),
    ];
    for (body, expect) in cases {
        let (status, headers, problem) =
            call(&router, post(&body).body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(expect), "{body}: {detail}");
        assert!(detail.len() < 1000, "the detail quotes too much: {detail}");
    }
    // the largest order within every bound is accepted
    let line = r#"{"product_id":"P-001","quantity":1000}"#;
    let max = format!(
        r#"{{"customer_id":"{}","lines":[{}],"ship_to":"DE"}}"#,
        "c".repeat(64),
        vec![line; 100].join(",")
    );
    let (status, _, body) = call(&router, post(&max).body(Body::from(max.clone())).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        orders(&system).await,
        1,
        "only the order within bounds was stored"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413_problem_json() {
    let (system, router, _dir) = start().await;
    let padding = " ".repeat(64 * 1024);
    let big = format!(
        r#"{{"customer_id":"c","lines":[{{"product_id":"P-001","quantity":1}}]{padding}}}"#
    );
    let (status, headers, problem) =
        call(&router, post(&big).body(Body::from(big.clone())).unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(problem["status"], 413);
    // announced by Content-Length, or streamed without one: the same answer
    let stream = futures::stream::iter(
        (0..80).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))),
    );
    let req = Request::post("/orders")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap();
    let (status, headers, _) = call(&router, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(orders(&system).await, 0);
    system.shutdown().await;
}

#[tokio::test]
async fn the_same_key_with_a_different_order_is_422_and_a_reencoded_order_is_the_same() {
    let (system, router, _dir) = start().await;
    let send = |body: &str, key: &str| {
        post(body)
            .header("idempotency-key", key)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, _, first) = call(&router, send(GOOD, "k-9")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // the same order spelled differently (key order, white space, a default written out)
    let same = r#"{ "notify_via": "sms", "ship_to": "US",
                    "lines": [ {"quantity": 2, "product_id": "P-001"} ], "customer_id": "c-1" }"#;
    let (status, headers, again) = call(&router, send(same, "k-9")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again["id"], first["id"]);
    // a different order under the same key
    let other =
        r#"{"customer_id":"c-1","lines":[{"product_id":"P-001","quantity":3}],"notify_via":"sms"}"#;
    let (status, headers, problem) = call(&router, send(other, "k-9")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(problem["status"], 422);
    assert_eq!(orders(&system).await, 1);
    // racing requests with one key and different orders: one order, the rest 202 or 422
    let mut tasks = Vec::new();
    for q in 1..=8 {
        let router = router.clone();
        let body =
            format!(r#"{{"customer_id":"c-2","lines":[{{"product_id":"P-001","quantity":{q}}}]}}"#);
        tasks.push(tokio::spawn(async move {
            call(&router, send(&body, "race")).await.0
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::ACCEPTED).count(),
        1,
        "{codes:?}"
    );
    assert!(codes
        .iter()
        .all(|c| *c == StatusCode::ACCEPTED || *c == StatusCode::UNPROCESSABLE_ENTITY));
    assert_eq!(orders(&system).await, 2);
    system.shutdown().await;
}

#[tokio::test]
async fn invalid_idempotency_keys_are_400() {
    let (system, router, _dir) = start().await;
    for key in ["", &"k".repeat(129), "has space", "ü"] {
        let req = post(GOOD)
            .header(
                "idempotency-key",
                axum::http::HeaderValue::from_bytes(key.as_bytes()).unwrap(),
            )
            .body(Body::from(GOOD))
            .unwrap();
        let (status, headers, problem) = call(&router, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"));
    }
    let longest = "k".repeat(128);
    let req = post(GOOD)
        .header("idempotency-key", longest.as_str())
        .body(Body::from(GOOD))
        .unwrap();
    assert_eq!(call(&router, req).await.0, StatusCode::ACCEPTED);
    assert_eq!(orders(&system).await, 1);
    system.shutdown().await;
}

#[tokio::test]
async fn keys_expire_after_the_window_and_expired_keys_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::start(Config::new(dir.path()), Arc::new(MemoryTransport::new()))
        .await
        .unwrap();
    let router = app(
        AppState::new(system.db.clone(), system.bus.producer().clone())
            .idempotency_window(std::time::Duration::from_secs(3600)),
    );
    let send = |key: &str| {
        post(GOOD)
            .header("idempotency-key", key)
            .body(Body::from(GOOD))
            .unwrap()
    };
    let (_, _, first) = call(&router, send("old")).await;
    let (_, _, _) = call(&router, send("other-old")).await;
    // age both keys past the window (61 minutes)
    let aged = chrono::Utc::now().timestamp_micros() - 61 * 60 * 1_000_000;
    system
        .db
        .write(move |tx| {
            Box::pin(async move {
                tx.exec(
                    "UPDATE api_idempotency_keys SET created_at = ?",
                    orderflow::args![aged],
                )
                .await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .await
        .unwrap();
    // an expired key names a new order
    let (status, headers, second) = call(&router, send("old")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(!headers.contains_key("idempotent-replayed"));
    assert_ne!(second["id"], first["id"]);
    // ... and is live again: a retry replays the new order
    let (_, headers, third) = call(&router, send("old")).await;
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(third["id"], second["id"]);
    // the write swept the other expired key
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM api_idempotency_keys")
        .fetch_all(system.db.read.sqlite().unwrap())
        .await
        .unwrap();
    assert_eq!(keys, vec!["old".to_string()]);
    system.shutdown().await;
}

#[tokio::test]
async fn keys_of_the_earlier_table_move_over_and_still_replay() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("orderflow.db").display()
    );
    let old = sqlx::SqlitePool::connect(&url).await.unwrap();
    let placed = chrono::Utc::now().timestamp_micros();
    sqlx::raw_sql(
        "CREATE TABLE api_orders (order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, \
         total_cents INTEGER NOT NULL, body TEXT NOT NULL, correlation_id TEXT NOT NULL, \
         placed_at INTEGER NOT NULL);
         CREATE TABLE api_idempotency (key TEXT PRIMARY KEY, order_id TEXT NOT NULL);
         INSERT INTO api_idempotency VALUES ('legacy', '0195f3c2-0000-7000-8000-000000000001');",
    )
    .execute(&old)
    .await
    .unwrap();
    sqlx::query("INSERT INTO api_orders VALUES ('0195f3c2-0000-7000-8000-000000000001', 'c-1', 4980, '{}', 'c', ?)")
        .bind(placed)
        .execute(&old)
        .await
        .unwrap();
    old.close().await;
    let system = System::start(Config::new(dir.path()), Arc::new(MemoryTransport::new()))
        .await
        .unwrap();
    let router = app(AppState::new(
        system.db.clone(),
        system.bus.producer().clone(),
    ));
    let req = post(GOOD)
        .header("idempotency-key", "legacy")
        .body(Body::from(GOOD))
        .unwrap();
    let (status, headers, body) = call(&router, req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(body["id"], "0195f3c2-0000-7000-8000-000000000001");
    let old_table: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'api_idempotency'")
            .fetch_one(system.db.read.sqlite().unwrap())
            .await
            .unwrap();
    assert_eq!(old_table, 0, "the earlier table is dropped");
    system.shutdown().await;
}
