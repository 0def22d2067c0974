//! How errors become HTTP responses: RFC 9457 problem details,
//! `Content-Type: application/problem+json`,
//! `{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "..."}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tidings_core::{Error, ErrorKind};

use crate::AdminError;

/// The media type of problem details (RFC 9457).
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

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
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.message,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, PROBLEM_JSON)],
            body.to_string(),
        )
            .into_response()
    }
}
