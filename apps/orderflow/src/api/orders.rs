//! `POST /orders` and `GET /orders/{id}`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tidings_core::SendOptions;
use uuid::Uuid;

use super::correlation::CorrelationId;
use super::idempotency::{self, Seen};
use super::problem::Problem;
use super::request::{parse_order, PlaceOrder, MAX_BODY_BYTES};
use super::AppState;
use crate::args;
use crate::contracts::{OrderLine, OrderPlaced};
use crate::db::Work;

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Status {
    /// Accepted, nothing reserved yet.
    Pending,
    /// Stock is reserved.
    StockReserved,
    /// Payment captured.
    Paid,
    /// Shipment created.
    Shipped,
    /// Done.
    Completed,
    /// Cancelled (see `reason`).
    Cancelled,
}

impl Status {
    fn parse(s: &str) -> Status {
        match s {
            "StockReserved" => Status::StockReserved,
            "Paid" => Status::Paid,
            "Shipped" => Status::Shipped,
            "Completed" => Status::Completed,
            "Cancelled" => Status::Cancelled,
            _ => Status::Pending,
        }
    }
}

/// The answer to `POST /orders`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderAccepted {
    /// The order's id.
    pub id: Uuid,
    /// Always `Pending` when accepted.
    pub status: Status,
    /// Total in cents.
    pub total_cents: i64,
}

/// An order's status.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderStatus {
    /// The order's id.
    pub id: Uuid,
    /// Where it stands.
    pub status: Status,
    /// Why it was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn accepted(id: Uuid, total_cents: i64, correlation: &str, replayed: bool) -> Response {
    let mut resp = (
        StatusCode::ACCEPTED,
        Json(OrderAccepted {
            id,
            status: Status::Pending,
            total_cents,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/orders/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    tracing::debug!(%id, correlation, replayed, "order accepted");
    resp
}

/// The catalog's price of each line's product; a 400 naming every unknown product.
async fn price(state: &AppState, order: &PlaceOrder) -> Result<i64, Problem> {
    let rows: Vec<(String, i64)> = state
        .db
        .read
        .all("SELECT product_id, price_cents FROM api_catalog", args![])
        .await
        .map_err(Problem::internal)?;
    let prices: HashMap<String, i64> = rows.into_iter().collect();
    let mut errors = Vec::new();
    let mut total = 0i64;
    for (i, l) in order.lines.iter().enumerate() {
        match prices.get(&l.product_id) {
            Some(p) => {
                total = p
                    .checked_mul(i64::from(l.quantity))
                    .and_then(|t| t.checked_add(total))
                    .ok_or_else(|| Problem::invalid("the order's total is too large", vec![]))?;
            }
            None => errors.push(format!(
                "lines[{i}].product_id `{}` is not in the catalog",
                l.product_id
            )),
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors.join("; "), errors));
    }
    Ok(total)
}

/// What the order's transaction did.
enum Stored {
    /// Stored a new order.
    New,
    /// The key was used for this same order: (id, total).
    Replayed(String, i64),
    /// The key was used for a different order.
    Conflict,
}

/// Places an order: the order row and its `OrderPlaced` event commit in one transaction.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body(content = PlaceOrder, description = "The order; at most 65536 bytes (413 above)"),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$",
         description = "Same key, same order: a retry never creates a second one. The same key with a different order is refused (422). Keys are remembered for a window (default 24 h)."),
        ("X-Correlation-Id" = Option<String>, Header, description = "Carried by every message the order causes; generated when absent, or when not 1–128 visible ASCII characters"),
    ),
    responses(
        (status = 202, description = "Accepted; the order is processed asynchronously", body = OrderAccepted,
         headers(("Location" = String, description = "/orders/{id}"), ("X-Correlation-Id" = String))),
        (status = 400, description = "Invalid order or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 65536 bytes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The Idempotency-Key was used for a different order", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The pipeline is too far behind to finish a new order in time; nothing was stored", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn place_order(
    State(state): State<AppState>,
    Extension(CorrelationId(correlation)): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    if let Some(refused) = state.shed.as_ref().and_then(|s| s.check()) {
        return Ok(refused);
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(MAX_BODY_BYTES),
        _ => Problem::invalid(format!("the body could not be read: {e}"), vec![]),
    })?;
    let key = idempotency::key(&headers)?;
    let order = parse_order(&body)?;
    let fingerprint = order.fingerprint();
    let window = state.idempotency_window;
    if let Some(k) = &key {
        let horizon = idempotency::horizon(chrono::Utc::now().timestamp_micros(), window);
        match idempotency::seen(&state.db.read, k, &fingerprint, horizon)
            .await
            .map_err(Problem::internal)?
        {
            Seen::New => {}
            Seen::Same(id, total) => return replayed(&id, total, &correlation),
            Seen::Different => return Err(Problem::key_reused()),
        }
    }
    let total = price(&state, &order).await?;
    let id = Uuid::now_v7();
    let placed_at = chrono::Utc::now();
    let opts = SendOptions::default()
        .correlation_id(correlation.clone())
        .partition_key(id.to_string());
    let json = serde_json::to_string(&order).map_err(Problem::internal)?;
    let corr = correlation.clone();
    let stored = state
        .db
        .transact(state.producer.clone(), opts, move |work: &mut Work<'_>| {
            Box::pin(async move {
                if let Some(k) = &key {
                    // checked again inside the (serialized) write transaction: two racing
                    // retries
                    let now = placed_at.timestamp_micros();
                    let horizon = idempotency::horizon(now, window);
                    match idempotency::seen_in(work, k, &fingerprint, horizon)
                        .await?
                    {
                        Seen::New => {}
                        Seen::Same(id, total) => return Ok(Stored::Replayed(id, total)),
                        Seen::Different => return Ok(Stored::Conflict),
                    }
                    idempotency::remember(work, k, &id.to_string(), &fingerprint, now, horizon)
                        .await?;
                }
                work.exec(
                    "INSERT INTO api_orders (order_id, customer_id, total_cents, body, correlation_id, placed_at) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                    args![id.to_string(), &order.customer_id, total, json, &corr, placed_at.timestamp_micros()],
                )
                .await?;
                let channel = order.channel();
                let ship_to = order.country().to_string();
                work.emit(&OrderPlaced {
                    order_id: id,
                    customer_id: order.customer_id,
                    lines: order.lines.into_iter().map(OrderLine::from).collect(),
                    total_cents: total,
                    channel,
                    ship_to,
                    placed_at,
                })?;
                Ok(Stored::New)
            })
        })
        .await
        .map_err(Problem::internal)?;
    match stored {
        Stored::New => Ok(accepted(id, total, &correlation, false)),
        Stored::Replayed(id, total) => replayed(&id, total, &correlation),
        Stored::Conflict => Err(Problem::key_reused()),
    }
}

fn replayed(id: &str, total: i64, correlation: &str) -> Result<Response, Problem> {
    Ok(accepted(
        id.parse().map_err(Problem::internal)?,
        total,
        correlation,
        true,
    ))
}

/// An order's status, from the read model fed by events.
#[utoipa::path(
    get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order's status", body = OrderStatus, headers(("X-Correlation-Id" = String))),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderStatus>, Problem> {
    let not_found = || Problem::not_found(format!("there is no order `{id}`"));
    let Ok(uuid) = id.parse::<Uuid>() else {
        return Err(not_found());
    };
    let row: Option<(String, Option<String>)> = state
        .db
        .read
        .opt(
            "SELECT status, reason FROM view_orders WHERE order_id = ?",
            args![uuid.to_string()],
        )
        .await
        .map_err(Problem::internal)?;
    if let Some((status, reason)) = row {
        return Ok(Json(OrderStatus {
            id: uuid,
            status: Status::parse(&status),
            reason,
        }));
    }
    // accepted but not yet seen by the read model
    let known: Option<(String,)> = state
        .db
        .read
        .opt(
            "SELECT order_id FROM api_orders WHERE order_id = ?",
            args![uuid.to_string()],
        )
        .await
        .map_err(Problem::internal)?;
    match known {
        Some(_) => Ok(Json(OrderStatus {
            id: uuid,
            status: Status::Pending,
            reason: None,
        })),
        None => Err(not_found()),
    }
}
