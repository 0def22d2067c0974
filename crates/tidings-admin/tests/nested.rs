//! Mounted under a prefix with `app.nest_service("/admin", router(..))`: the dashboard
//! answers at `/admin` and at `/admin/` (the link apps print; axum's `nest` answers only at
//! `/admin`), its scripts and the bundled chart library load from `/admin/assets/` without
//! the token the API needs.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tidings_admin::{router, AdminState};
use tower::ServiceExt;

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String, String) {
    let resp = app
        .clone()
        .oneshot(
            Request::get(uri)
                .header("host", "127.0.0.1:8080")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, ctype, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn dashboard_answers_with_and_without_the_slash() {
    let t = common::transport().await;
    let app = axum::Router::new().nest_service("/admin", router(AdminState::new(t)));
    for uri in ["/admin", "/admin/"] {
        let (status, ctype, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(ctype.starts_with("text/html"), "{uri}: {ctype}");
        assert!(body.contains("<title>Tidings admin</title>"), "{uri}");
    }
}

#[tokio::test]
async fn assets_are_public_and_the_api_is_not() {
    let t = common::transport().await;
    let state = AdminState::new(t).token(Some("s3cret".into()));
    let app = axum::Router::new().nest_service("/admin", router(state));
    let (status, _, page) = get(&app, "/admin/").await;
    assert_eq!(status, StatusCode::OK);
    for (asset, ctype, needle) in [
        ("uplot.js", "text/javascript", "uPlot"),
        ("uplot.css", "text/css", ".uplot"),
        ("charts.js", "text/javascript", "drawChart"),
        ("dashboard.js", "text/javascript", "loadEndpoints"),
        ("uplot-LICENSE.txt", "text/plain", "MIT"),
    ] {
        let (status, ct, body) = get(&app, &format!("/admin/assets/{asset}")).await;
        assert_eq!(status, StatusCode::OK, "{asset}");
        assert!(ct.starts_with(ctype), "{asset}: {ct}");
        assert!(body.contains(needle), "{asset}");
    }
    // The page loads each script it names.
    for f in ["uplot.js", "charts.js", "dashboard.js", "uplot.css"] {
        assert!(
            page.contains(&format!("\"{f}\"")) || page.contains(f),
            "{f}"
        );
    }
    let (status, ct, _) = get(&app, "/admin/assets/nope.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(ct.starts_with("application/problem+json"), "{ct}");
    for api in [
        "/admin/queues",
        "/admin/endpoints",
        "/admin/history",
        "/admin/dlq/groups",
    ] {
        let (status, _, _) = get(&app, api).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{api}");
    }
}
