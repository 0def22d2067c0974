//! The HTTP API (axum): place orders, read their status, the OpenAPI document. Build it
//! with [`app`]; tests drive it with tower's `oneshot`.

pub mod correlation;
pub mod openapi;
pub mod orders;
pub mod problem;

use axum::routing::{get, post};
use axum::Router;
use tidings_core::Producer;

use crate::db::Db;

pub use correlation::{CorrelationId, CORRELATION_HEADER};
pub use openapi::ApiDoc;
pub use orders::{OrderAccepted, OrderStatus, PlaceOrder};

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The business database.
    pub db: Db,
    /// Sends / publishes (the outbox writes its envelopes).
    pub producer: Producer,
}

/// The API's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(orders::place_order))
        .route("/orders/{id}", get(orders::get_order))
        .route("/openapi.json", get(openapi::openapi_json))
        .layer(axum::middleware::from_fn(correlation::correlate))
        .with_state(state)
}
