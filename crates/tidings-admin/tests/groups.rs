//! `GET /dlq/groups` and `POST /dlq/replay {"group": ..}` over HTTP (tower `oneshot`, memory
//! transport): dead letters grouped by type + reason + masked error text, one group
//! replayed — exactly its members, nothing else — and an unknown group replaying nothing.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tidings_admin::{router, AdminState, FailureGroups};
use tidings_core::FaultReason;
use tower::ServiceExt;

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn groups(app: &axum::Router, query: &str) -> FailureGroups {
    let (status, v) = call(
        app,
        Request::get(format!("/dlq/groups{query}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    serde_json::from_value(v).unwrap()
}

async fn replay(app: &axum::Router, body: Value) -> (StatusCode, Value) {
    call(
        app,
        Request::post("/dlq/replay")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn groups_by_failure_and_replays_one_group() {
    let t = common::transport().await;
    let mut not_found = Vec::new();
    for (i, q) in [(17, "orders"), (42, "orders"), (99, "payments")] {
        let error = format!("order {i} not found");
        let id = common::dead_letter_with(
            &t,
            q,
            "shop.reserve",
            FaultReason::HandlerFailed,
            &error,
            "c",
        )
        .await;
        not_found.push(id);
    }
    let declined = common::dead_letter_with(
        &t,
        "payments",
        "shop.charge",
        FaultReason::HandlerFailed,
        "card declined",
        "c",
    )
    .await;
    let panicked = common::dead_letter_with(
        &t,
        "orders",
        "shop.reserve",
        FaultReason::Panicked,
        "order 5 not found",
        "c",
    )
    .await;
    let app = router(AdminState::new(t.clone()));

    let g = groups(&app, "").await;
    assert_eq!(
        (g.counted, g.truncated, g.groups.len()),
        (5, false, 3),
        "{g:?}"
    );
    let big = &g.groups[0];
    assert_eq!(big.count, 3);
    assert_eq!(big.error, "order <n> not found");
    assert_eq!(big.reason, "handler-failed");
    assert_eq!(big.endpoints.get("orders"), Some(&2));
    assert_eq!(big.endpoints.get("payments"), Some(&1));
    // The other filters narrow the groups.
    let only_payments = groups(&app, "?endpoint=payments").await;
    assert_eq!(only_payments.counted, 2);
    assert_eq!(only_payments.groups.len(), 2);

    // Dry run: names the members, moves nothing.
    let (status, v) = replay(&app, json!({ "group": big.group, "dry_run": true })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut ids: Vec<String> = serde_json::from_value(v["ids"].clone()).unwrap();
    ids.sort();
    let mut want: Vec<String> = not_found.iter().map(|u| u.to_string()).collect();
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(v["replayed"], 0);

    // An unknown group replays nothing (not everything).
    let (status, v) = replay(&app, json!({ "group": "0000000000000000" })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["replayed"], 0);
    assert_eq!(groups(&app, "").await.counted, 5);

    // The group, for real: its three members leave the error queues, the others stay.
    let (status, v) = replay(&app, json!({ "group": big.group })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["replayed"], 3, "{v}");
    let left = t.dead_letters(&Default::default()).await.unwrap();
    let mut left: Vec<_> = left.iter().map(|d| d.envelope.id).collect();
    left.sort();
    let mut want = vec![declined, panicked];
    want.sort();
    assert_eq!(left, want);
    let g = groups(&app, "").await;
    assert_eq!(g.groups.len(), 2);
    assert!(g.groups.iter().all(|x| x.count == 1));

    // A blank group is no filter: refused like any unfiltered replay.
    let (status, _) = replay(&app, json!({ "group": " " })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
