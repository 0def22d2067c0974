//! Bearer-token check for the admin routes (compared in constant time by `subtle`).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::api_error::ApiError;

use crate::AdminState;

/// Paths anyone may fetch: the dashboard shell and its static scripts (they hold no data;
/// the page's script sends the token), the probes and the OpenAPI document (it describes
/// the routes, holds no data, and a client needs it before it has a token).
const PUBLIC: [&str; 4] = ["/", "/healthz", "/readyz", "/openapi.json"];

fn public(path: &str) -> bool {
    PUBLIC.contains(&path) || path.starts_with("/assets/")
}

pub(crate) async fn require_token(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(request).await;
    };
    if public(request.uri().path()) {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(token.as_bytes())) => next.run(request).await,
        _ => {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token: send `Authorization: Bearer <token>`",
            )
            .into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            resp
        }
    }
}
