//! How errors become HTTP responses: RFC 9457 problem details,
//! `Content-Type: application/problem+json`,
//! `{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "..."}`.
//!
//! Every error the admin router answers has this shape: the routes' own ([`ApiError`]),
//! the guards', a path no route serves ([`no_route`]) and what axum answers by itself (a
//! query string its extractor cannot parse, a method a path does not take), which
//! [`bare_errors_as_problems`] rewrites.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tidings_core::{Error, ErrorKind};

use crate::AdminError;

/// The media type of problem details (RFC 9457).
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The most bytes of a bare error body kept as a problem's `detail`.
const MAX_BARE_DETAIL: usize = 4096;

/// An error, as RFC 9457 problem details (`application/problem+json`).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, utoipa::ToResponse,
)]
#[response(
    description = "An error, as RFC 9457 problem details",
    content_type = "application/problem+json"
)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank`: the status says it all.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    #[schema(example = "Not Found")]
    pub title: String,
    /// The HTTP status.
    #[schema(example = 404, minimum = 400, maximum = 599)]
    pub status: u16,
    /// What exactly went wrong.
    pub detail: String,
}

/// An error answered as problem details with a fitting status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Transport(t) => t.into(),
            AdminError::InvalidDuration(_)
            | AdminError::InvalidId(_)
            | AdminError::InvalidRequest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::NotFound(_) | Error::UnknownQueue(_) => StatusCode::NOT_FOUND,
            Error::Config(_) => StatusCode::BAD_REQUEST,
            Error::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            _ if e.kind() == ErrorKind::Transient => StatusCode::SERVICE_UNAVAILABLE,
            Error::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("Error").into(),
            status: self.status.as_u16(),
            detail: self.message,
        };
        let body = serde_json::to_string(&problem).unwrap_or_default();
        (self.status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response()
    }
}

/// The answer for a path no route serves.
pub(crate) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no admin route at `{}`: see /openapi.json for the routes",
            uri.path().escape_debug()
        ),
    )
}

/// Rewrites an error response that is not JSON (axum's own rejections are `text/plain`,
/// its 405 has no body) as problem details, keeping the status and headers (`Allow`,
/// `WWW-Authenticate`) and the text as `detail`. JSON error bodies (problem details, the
/// readiness probe's `{"status":"unavailable"}`) pass unchanged.
pub(crate) async fn bare_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/") && ct.contains("json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_BARE_DETAIL).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let detail = if text.is_empty() {
        match status {
            StatusCode::METHOD_NOT_ALLOWED => "this route does not take this method".to_string(),
            _ => status.canonical_reason().unwrap_or("Error").to_string(),
        }
    } else {
        text
    };
    let problem = ApiError::new(status, detail).into_response();
    let (problem_parts, problem_body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    drop(problem_parts);
    Response::from_parts(parts, Body::new(problem_body))
}
