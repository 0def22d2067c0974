//! `GET /sagas` and `GET /sagas/{saga}/{key}` over a saga store where a saga ran on the
//! in-memory transport: listing (filters, bad filters → 400 problem+json), showing one,
//! 404 for an unknown instance and when no saga store is configured.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidings_admin::{router, AdminState};
use tidings_core::saga::{Completion, MemorySagaStore, Saga, SagaQueries, SagaState};
use tidings_core::transport::memory::MemoryTransport;
use tidings_core::{Bus, Endpoint, Message};
use tower::ServiceExt;

#[derive(Debug, Clone, Serialize, Deserialize, Message)]
#[message(name = "a.opened", version = 1, kind = "event")]
struct Opened {
    id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Ticket {
    Open,
}

impl SagaState for Ticket {
    fn name(&self) -> &str {
        "open"
    }
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Option<String>, Value) {
    let resp = app
        .clone()
        .oneshot(
            Request::get(uri)
                .header("host", "127.0.0.1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        ct,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn sagas_are_listed_and_shown() {
    let transport = Arc::new(MemoryTransport::new());
    let store = Arc::new(MemorySagaStore::new());
    let saga = Saga::<Ticket>::new("ticket")
        .completion(Completion::Keep)
        .starts_with(|m: &Opened| m.id, |_, _| Ok(Ticket::Open));
    let bus = Bus::builder(transport.clone())
        .endpoint(saga.attach(Endpoint::new("tickets"), store.clone()))
        .sends::<Opened>()
        .start()
        .await
        .unwrap();
    for id in 1..=3 {
        bus.publish(&Opened { id }).await.unwrap();
    }
    for _ in 0..200 {
        if store.show("ticket", "3").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let without = router(AdminState::new(transport.clone()));
    let (status, ct, body) = get(&without, "/sagas").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    assert!(body["detail"].as_str().unwrap().contains("no saga store"));

    let app = router(AdminState::new(transport.clone()).sagas(store.clone()));
    let (status, _, body) = get(&app, "/sagas").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{body}");
    assert!(rows
        .iter()
        .all(|r| r["saga"] == "ticket" && r["state"] == "open"));

    let (_, _, body) = get(&app, "/sagas?limit=2&offset=0").await;
    assert_eq!(body.as_array().unwrap().len(), 2);
    let (_, _, body) = get(&app, "/sagas?status=completed").await;
    assert_eq!(body.as_array().unwrap().len(), 0);
    let (_, _, body) = get(&app, "/sagas?stuck_for=1h").await;
    assert_eq!(
        body.as_array().unwrap().len(),
        0,
        "nothing idle for an hour"
    );

    for bad in [
        "/sagas?status=stuck",
        "/sagas?stuck_for=soon",
        "/sagas?nope=1",
    ] {
        let (status, ct, _) = get(&app, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(ct.as_deref(), Some("application/problem+json"), "{bad}");
    }

    let (status, _, body) = get(&app, "/sagas/ticket/2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["key"].as_str(), body["data"].as_str()),
        (Some("2"), Some("Open"))
    );
    let (status, ct, _) = get(&app, "/sagas/ticket/99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ct.as_deref(), Some("application/problem+json"));
    bus.shutdown(Duration::from_secs(2)).await;
}
