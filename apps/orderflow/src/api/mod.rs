//! The HTTP API (axum): place orders, read their status, the OpenAPI document. Build it
//! with [`app`]; tests drive it with tower's `oneshot`.

pub mod correlation;
pub mod idempotency;
pub mod openapi;
pub mod orders;
pub mod problem;
pub mod request;
pub mod shed;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tidings_core::Producer;

use crate::db::Db;

pub use correlation::{CorrelationId, CORRELATION_HEADER};
pub use idempotency::IDEMPOTENCY_HEADER;
pub use openapi::ApiDoc;
pub use orders::{OrderAccepted, OrderStatus};
pub use request::{parse_order, NewOrderLine, PlaceOrder};

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The business database.
    pub db: Db,
    /// Sends / publishes (the outbox writes its envelopes).
    pub producer: Producer,
    /// How long an `Idempotency-Key` is remembered
    /// ([`idempotency::DEFAULT_WINDOW`] unless configured).
    pub idempotency_window: Duration,
    /// Back-pressure: refuse orders while the pipeline is too far behind (`None`: never).
    pub shed: Option<shed::Shed>,
}

impl AppState {
    /// State over `db` and `producer`, keys remembered for the default window.
    pub fn new(db: Db, producer: Producer) -> Self {
        AppState {
            db,
            producer,
            idempotency_window: idempotency::DEFAULT_WINDOW,
            shed: None,
        }
    }

    /// Refuses orders (503) while `shed` says the pipeline is behind.
    pub fn shed(mut self, shed: shed::Shed) -> Self {
        self.shed = Some(shed);
        self
    }

    /// Remembers `Idempotency-Key`s for `window`.
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        self.idempotency_window = window;
        self
    }
}

/// The API's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route(
            "/orders",
            post(orders::place_order).layer(DefaultBodyLimit::max(request::MAX_BODY_BYTES)),
        )
        .route("/orders/{id}", get(orders::get_order))
        .route("/openapi.json", get(openapi::openapi_json))
        .layer(axum::middleware::from_fn(correlation::correlate))
        .with_state(state)
}
