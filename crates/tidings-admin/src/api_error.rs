//! How errors become HTTP responses: a status and `{"error": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tidings_core::{Error, ErrorKind};

use crate::AdminError;

/// An error answered as JSON with a fitting status.
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
            AdminError::InvalidDuration(_) | AdminError::InvalidId(_) => {
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
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}
