//! The admin API against cross-site requests and overreach (issue #14): JSON-only
//! mutations, Host / Origin checks without a token, `all` for unfiltered replay / purge,
//! problem+json errors, a default page size. In-process (tower `oneshot`) and over a real
//! socket, where the client sets `Host` itself.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tidings_admin::{router, AdminConfig, AdminServer, AdminState, DEFAULT_PAGE_SIZE};
use tidings_core::transport::Transport;
use tidings_core::FaultReason;
use tower::ServiceExt;

/// A request with exactly these headers.
async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
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
    (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn two_dead_letters() -> std::sync::Arc<dyn Transport> {
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
    t
}

async fn dead_count(t: &std::sync::Arc<dyn Transport>) -> usize {
    t.dead_letters(&Default::default()).await.unwrap().len()
}

const LOCAL: (&str, &str) = ("host", "127.0.0.1:9090");
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn cross_origin_text_plain_post_is_refused_and_replays_nothing() {
    let t = two_dead_letters().await;
    let app = router(AdminState::new(t.clone()));
    // What a web page can send without a preflight: text/plain, an empty body.
    let evil = ("origin", "https://evil.example");
    for ct in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
    ] {
        let (s, ctype, body) = send(
            &app,
            "POST",
            "/dlq/replay",
            &[LOCAL, evil, ("content-type", ct)],
            "",
        )
        .await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}: {body}");
        assert_eq!(ctype.as_deref(), Some("application/problem+json"));
        let p: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(p["status"], 415);
        assert!(
            p["detail"].as_str().unwrap().contains("application/json"),
            "{p}"
        );
    }
    // No content type at all, same origin: still refused.
    let (s, _, _) = send(&app, "POST", "/dlq/replay", &[LOCAL], r#"{"all":true}"#).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // JSON from another origin (it would need a preflight; refused anyway).
    let (s, _, body) = send(
        &app,
        "POST",
        "/dlq/replay",
        &[LOCAL, evil, JSON],
        r#"{"all":true}"#,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("cross-origin"), "{body}");
    let (s, _, _) = send(
        &app,
        "DELETE",
        "/dlq?confirm=true&all=true",
        &[LOCAL, evil],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, _, _) = send(
        &app,
        "POST",
        "/dlq/replay",
        &[LOCAL, ("origin", "null"), JSON],
        r#"{"all":true}"#,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(dead_count(&t).await, 2, "nothing was replayed or purged");

    // The dashboard's own request (same origin, JSON) goes through.
    let own = ("origin", "http://127.0.0.1:9090");
    let (s, _, body) = send(
        &app,
        "POST",
        "/dlq/replay",
        &[LOCAL, own, JSON],
        r#"{"endpoint":"orders"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(dead_count(&t).await, 1);
}

#[tokio::test]
async fn dns_rebinding_hosts_are_refused_without_a_token() {
    let t = two_dead_letters().await;
    let app = router(AdminState::new(t.clone()));
    let rebound = ("host", "rebind.evil.example:9090");
    for uri in ["/dlq", "/queues", "/dlq/summary"] {
        let (s, _, body) = send(&app, "GET", uri, &[rebound], "").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{uri}: {body}");
        assert!(!body.contains("shop.reserve"), "{body}");
    }
    for host in [
        "localhost:9090",
        "127.0.0.1",
        "[::1]:9090",
        "dash.localhost",
    ] {
        let (s, _, body) = send(&app, "GET", "/dlq", &[("host", host)], "").await;
        assert_eq!(s, StatusCode::OK, "{host}: {body}");
    }
    // An allowed name, or a token, lifts the host rule.
    let allowed = router(AdminState::new(t.clone()).allow_hosts(["Rebind.Evil.Example"]));
    assert_eq!(
        send(&allowed, "GET", "/dlq", &[rebound], "").await.0,
        StatusCode::OK
    );
    let with_token = router(AdminState::new(t.clone()).token(Some("tok".into())));
    let auth = ("authorization", "Bearer tok");
    assert_eq!(
        send(&with_token, "GET", "/dlq", &[rebound, auth], "")
            .await
            .0,
        StatusCode::OK
    );
    // ... but never the JSON rule.
    let (s, _, _) = send(
        &with_token,
        "POST",
        "/dlq/replay",
        &[rebound, auth, ("content-type", "text/plain")],
        r#"{"all":true}"#,
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, ctype, body) = send(&with_token, "GET", "/dlq", &[], "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(ctype.as_deref(), Some("application/problem+json"));
    assert!(body.contains("bearer token"), "{body}");
}

#[tokio::test]
async fn unfiltered_replay_and_purge_need_all() {
    let t = two_dead_letters().await;
    let app = router(AdminState::new(t.clone()));
    for body in ["", "{}", r#"{"limit":10}"#, r#"{"to":"orders"}"#] {
        let (s, _, text) = send(&app, "POST", "/dlq/replay", &[LOCAL, JSON], body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body:?}: {text}");
        assert!(text.contains("\\\"all\\\": true"), "{text}");
    }
    let (s, _, text) = send(&app, "DELETE", "/dlq?confirm=true", &[LOCAL, JSON], "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("all=true"), "{text}");
    assert_eq!(dead_count(&t).await, 2);

    let (s, _, text) = send(
        &app,
        "DELETE",
        "/dlq?confirm=true&all=true&limit=1",
        &[LOCAL, JSON],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(dead_count(&t).await, 1);
    let (s, _, text) = send(
        &app,
        "POST",
        "/dlq/replay",
        &[LOCAL, JSON],
        r#"{"all":true}"#,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["replayed"], 1);
    assert_eq!(dead_count(&t).await, 0);
}

#[tokio::test]
async fn errors_are_problem_details_and_listings_are_paged() {
    let t = common::transport().await;
    for i in 0..DEFAULT_PAGE_SIZE + 2 {
        common::dead_letter(
            &t,
            "orders",
            "shop.reserve",
            FaultReason::HandlerFailed,
            &format!("c-{i}"),
        )
        .await;
    }
    let app = router(AdminState::new(t.clone()));
    let count = |body: &str| serde_json::from_str::<Vec<Value>>(body).unwrap().len();
    let (_, _, body) = send(&app, "GET", "/dlq", &[], "").await;
    assert_eq!(count(&body), DEFAULT_PAGE_SIZE);
    let (_, _, body) = send(&app, "GET", "/dlq?limit=0", &[], "").await;
    assert_eq!(count(&body), DEFAULT_PAGE_SIZE);
    let (_, _, body) = send(&app, "GET", "/dlq?limit=101", &[], "").await;
    assert_eq!(count(&body), 101);
    let (_, _, body) = send(&app, "GET", "/dlq?limit=3", &[], "").await;
    assert_eq!(count(&body), 3);

    let (s, ctype, body) = send(
        &app,
        "GET",
        &format!("/dlq/{}", uuid::Uuid::now_v7()),
        &[],
        "",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(ctype.as_deref(), Some("application/problem+json"));
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            p["type"].as_str(),
            p["title"].as_str(),
            p["status"].as_u64()
        ),
        (Some("about:blank"), Some("Not Found"), Some(404))
    );
    assert!(p["detail"].is_string(), "{p}");
}

#[tokio::test]
async fn over_a_real_socket_the_browser_rules_hold() {
    let t = two_dead_letters().await;
    let server = AdminServer::bind(
        AdminConfig::new(([127, 0, 0, 1], 0).into()),
        AdminState::new(t.clone()),
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/dlq/replay");
    // A cross-site form post: text/plain, empty body.
    let r = client
        .post(&url)
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // DNS rebinding: the attacker's name in Host.
    let r = client
        .get(format!("http://{addr}/dlq"))
        .header("host", format!("rebind.evil.example:{}", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(dead_count(&t).await, 2);
    // Same origin, JSON: replayed.
    let r = client
        .post(&url)
        .header("origin", format!("http://{addr}"))
        .json(&serde_json::json!({"endpoint": "payments"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(dead_count(&t).await, 1);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
