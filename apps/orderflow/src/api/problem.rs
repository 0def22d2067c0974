//! RFC 9457 problem details (`application/problem+json`) for every error the API returns.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The problem content type.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem detail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What exactly is wrong.
    pub detail: String,
    /// Every validation error found (field → message), when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Problem {
    /// A 400 for invalid input.
    pub fn invalid(detail: impl Into<String>, errors: Vec<String>) -> Self {
        Problem {
            kind: "https://orderflow.example/problems/invalid-order".into(),
            title: "The order is invalid".into(),
            status: 400,
            detail: detail.into(),
            errors,
        }
    }

    /// A 413: the body is larger than `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Problem {
            kind: "https://orderflow.example/problems/too-large".into(),
            title: "The request body is too large".into(),
            status: 413,
            detail: format!("the body is larger than {limit} bytes"),
            errors: Vec::new(),
        }
    }

    /// A 422: the Idempotency-Key was used for a different order.
    pub fn key_reused() -> Self {
        Problem {
            kind: "https://orderflow.example/problems/idempotency-key-reused".into(),
            title: "The Idempotency-Key was used for a different order".into(),
            status: 422,
            detail:
                "this Idempotency-Key was used for a different order; use a new key for a new order"
                    .into(),
            errors: Vec::new(),
        }
    }

    /// A 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem {
            kind: "https://orderflow.example/problems/not-found".into(),
            title: "No such order".into(),
            status: 404,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    /// A 500 (details are logged, not shown).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Problem {
            kind: "https://orderflow.example/problems/internal".into(),
            title: "Internal error".into(),
            status: 500,
            detail: "the order could not be processed; try again".into(),
            errors: Vec::new(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], body).into_response()
    }
}
