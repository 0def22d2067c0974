//! The OpenAPI document (`GET /openapi.json`) against the router that serves it: OpenAPI
//! 3.x, every route in it and every documented operation served, errors shaped as the
//! documented problem schema, the document public with a token set, and (when python's
//! `openapi-spec-validator` is installed) valid by that validator.

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tidings_admin::{router, AdminState};
use tower::ServiceExt;

/// Every (method, path) the router serves, as a person reads `router`'s docs.
const ROUTES: [(&str, &str); 19] = [
    ("get", "/"),
    ("get", "/assets/{file}"),
    ("get", "/queues"),
    ("get", "/endpoints"),
    ("get", "/history"),
    ("get", "/dlq"),
    ("delete", "/dlq"),
    ("get", "/dlq/summary"),
    ("get", "/dlq/groups"),
    ("post", "/dlq/replay"),
    ("get", "/dlq/{id}"),
    ("get", "/messages"),
    ("get", "/sagas"),
    ("get", "/sagas/{saga}/{key}"),
    ("get", "/topology"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
];

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = if method == "POST" { "{}" } else { "" };
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 4 << 20).await.unwrap();
    (parts.status, parts.headers, bytes.to_vec())
}

async fn document(app: &axum::Router) -> Value {
    let (status, headers, body) = send(app, "GET", "/openapi.json", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    serde_json::from_slice(&body).unwrap()
}

/// The documented (method, path) pairs.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                ops.insert((method.to_string(), path.clone()));
            }
        }
    }
    ops
}

/// Checks `body` against the document's `Problem` schema: every required property present,
/// no other, each of its declared type; and the status in the body is the response's.
fn assert_problem(doc: &Value, status: StatusCode, headers: &axum::http::HeaderMap, body: &[u8]) {
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{status}"
    );
    let schema = &doc["components"]["schemas"]["Problem"];
    let p: Value = serde_json::from_slice(body).unwrap();
    let props = schema["properties"].as_object().unwrap();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["type", "title", "status", "detail"])
    );
    let got: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(got, required, "{p}");
    for (name, value) in p.as_object().unwrap() {
        let ty = props[name]["type"].as_str().unwrap();
        let ok = match ty {
            "string" => value.is_string(),
            "integer" => value.is_u64(),
            other => panic!("unexpected type {other} for {name}"),
        };
        assert!(ok, "{name} is not a {ty}: {p}");
    }
    assert_eq!(p["status"].as_u64(), Some(u64::from(status.as_u16())));
    assert_eq!(p["title"].as_str(), status.canonical_reason());
}

#[tokio::test]
async fn the_document_describes_every_route_the_router_serves() {
    let app = router(AdminState::new(common::transport().await));
    let doc = document(&app).await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string());

    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(operations(&doc), listed);

    // Each documented operation reaches a route: no fallback 404, no 405.
    for (method, path) in operations(&doc) {
        let uri = path
            .replace("{file}", "dashboard.js")
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{saga}", "s")
            .replace("{key}", "k");
        let method = method.to_uppercase();
        let (status, _, body) =
            send(&app, &method, &uri, &[("content-type", "application/json")]).await;
        let text = String::from_utf8_lossy(&body);
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(!text.contains("no admin route"), "{method} {uri}: {text}");
        // Every documented status: the one answered is among them (or a 4XX / 5XX range).
        let responses = &doc["paths"][&path][method.to_lowercase()]["responses"];
        let code = status.as_u16().to_string();
        let range = format!("{}XX", status.as_u16() / 100);
        assert!(
            responses.get(&code).is_some() || responses.get(&range).is_some(),
            "{method} {uri} answered {status}, undocumented: {responses}"
        );
    }
}

/// A request (method, uri, headers) and the status it must get.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], StatusCode);

#[tokio::test]
async fn every_error_is_the_documented_problem() {
    let app = router(AdminState::new(common::transport().await));
    let doc = document(&app).await;
    let json = [("content-type", "application/json")];
    let cases: [Case; 7] = [
        // A route's own error.
        ("GET", "/dlq/not-a-uuid", &[], StatusCode::BAD_REQUEST),
        // axum's query rejection (text/plain before).
        ("GET", "/dlq?limit=many", &[], StatusCode::BAD_REQUEST),
        (
            "GET",
            "/topology?format=json&format=x",
            &[],
            StatusCode::BAD_REQUEST,
        ),
        // No route (an empty 404 before); a method the path does not take (an empty 405).
        ("GET", "/no/such/route", &[], StatusCode::NOT_FOUND),
        ("PUT", "/queues", &json, StatusCode::METHOD_NOT_ALLOWED),
        // The guard's.
        (
            "POST",
            "/dlq/replay",
            &[],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "GET",
            "/queues",
            &[("host", "evil.example")],
            StatusCode::FORBIDDEN,
        ),
    ];
    for (method, uri, headers, want) in cases {
        let (status, h, body) = send(&app, method, uri, headers).await;
        assert_eq!(
            status,
            want,
            "{method} {uri}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_problem(&doc, status, &h, &body);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(h.get("allow").is_some(), "405 keeps its Allow header");
        }
    }
    // The probe's 503 stays its documented JSON, not a problem.
    let down = router(AdminState::new(std::sync::Arc::new(common::DownTransport)));
    let (status, h, body) = send(&down, "GET", "/readyz", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        serde_json::json!({"status": "unavailable"})
    );
}

#[tokio::test]
async fn with_a_token_the_document_is_public_and_the_data_is_not() {
    let state = AdminState::new(common::transport().await).token(Some("s3cret".to_string()));
    let app = router(state);
    let doc = document(&app).await;
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let (status, h, body) = send(&app, "GET", "/queues", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_problem(&doc, status, &h, &body);
    let (status, h, body) = send(&app, "GET", "/nowhere", &[]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "unknown paths are not public"
    );
    assert_problem(&doc, status, &h, &body);
}

#[tokio::test]
async fn openapi_spec_validator_accepts_the_document() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => {
            let why = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => format!("python3: {e}"),
            };
            assert!(!ci, "CI needs python3 with openapi-spec-validator: {why}");
            println!("skipped: python3 with openapi-spec-validator is missing ({why})");
            return;
        }
    }
    let app = router(AdminState::new(common::transport().await));
    let (_, _, body) = send(&app, "GET", "/openapi.json", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, body).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             doc = json.load(open(sys.argv[1]))\n\
             validate(doc)\n\
             print('valid', doc['openapi'])",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("valid 3."), "{stdout}");
}
