//! The admin API's request parsing (query strings, path ids, JSON bodies of replay and
//! purge), through its public router over an in-memory transport.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use tidings_core::transport::memory::MemoryTransport;
use tokio::runtime::Runtime;
use tower::ServiceExt;

fn harness() -> &'static (Runtime, Router) {
    static HARNESS: OnceLock<(Runtime, Router)> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let state = tidings_admin::AdminState::new(Arc::new(MemoryTransport::new()));
        (rt, tidings_admin::router(state))
    })
}

/// `data[0]` picks the method (GET, POST, DELETE), the bytes up to the first `\n` are the
/// path and query, the rest the JSON body. Whatever the request, the router answers, and
/// never with a server error: bad input is the client's fault (4xx).
pub fn admin_request(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = [Method::GET, Method::POST, Method::DELETE][usize::from(m % 3)].clone();
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(target) = std::str::from_utf8(target) else {
        return;
    };
    let target = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/{target}")
    };
    let Ok(req) = Request::builder()
        .method(method)
        .uri(target.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    let (rt, router) = harness();
    let resp = rt
        .block_on(router.clone().oneshot(req))
        .expect("the router is infallible");
    assert!(
        !resp.status().is_server_error(),
        "{target}: {} for a client's input",
        resp.status()
    );
}
