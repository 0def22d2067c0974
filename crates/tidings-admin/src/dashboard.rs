//! The dashboard served at `GET /`: one HTML page, its script (`/assets/dashboard.js`,
//! polling the JSON API and sending the bearer token kept in the browser's session storage
//! when the server wants one) and a bundled chart library: uPlot 1.6.32 (MIT, by Leon
//! Sorokin; `src/vendor/uplot/LICENSE`), served from `/assets/` — no CDN.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::api_error::{ApiError, Problem};

/// The page.
pub(crate) const PAGE: &str = include_str!("dashboard.html");

/// The page's scripts and styles: (path under the router, content type, text).
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "/assets/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard.js"),
    ),
    (
        "/assets/charts.js",
        "text/javascript; charset=utf-8",
        include_str!("charts.js"),
    ),
    (
        "/assets/uplot.js",
        "text/javascript; charset=utf-8",
        include_str!("vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "/assets/uplot.css",
        "text/css; charset=utf-8",
        include_str!("vendor/uplot/uPlot.min.css"),
    ),
    (
        "/assets/uplot-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_str!("vendor/uplot/LICENSE"),
    ),
];

/// The asset served at `path` (a path as the router sees it), with its content type.
pub(crate) fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ty, text)| (*ty, *text))
}

/// The dashboard (HTML).
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The page", body = String, content_type = "text/html")))]
pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// The dashboard's scripts and styles, and the bundled chart library.
#[utoipa::path(get, path = "/assets/{file}", tag = "dashboard",
    params(("file" = String, Path, description = "`dashboard.js`, `charts.js`, `uplot.js`, `uplot.css` or `uplot-LICENSE.txt`")),
    responses(
        (status = 200, description = "The asset", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/plain"),
        )),
        (status = 404, response = Problem),
    ))]
pub(crate) async fn serve_asset(Path(file): Path<String>) -> Response {
    match asset(&format!("/assets/{file}")) {
        Some((ty, text)) => (
            [
                (header::CONTENT_TYPE, ty),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            text,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
