//! `POST /orders` and `GET /orders/{id}`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tidings_core::SendOptions;
use uuid::Uuid;

use super::correlation::CorrelationId;
use super::problem::Problem;
use super::AppState;
use crate::contracts::{Channel, OrderLine, OrderPlaced};
use crate::db::{db_err, Work};

/// The idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// A new order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlaceOrder {
    /// Who orders.
    pub customer_id: String,
    /// What: at least one line, each with a catalog product and a quantity ≥ 1.
    pub lines: Vec<OrderLine>,
    /// Where to send the confirmation (default `email`).
    #[serde(default)]
    pub notify_via: Option<Channel>,
    /// ISO country to ship to (default `US`).
    #[serde(default)]
    pub ship_to: Option<String>,
}

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

async fn validate(state: &AppState, body: &[u8]) -> Result<(PlaceOrder, i64), Problem> {
    let order: PlaceOrder = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => {
            return Err(Problem::invalid(
                format!("the body is not valid JSON: {e}"),
                vec![],
            ))
        }
        Ok(v) => serde_json::from_value(v).map_err(|e| {
            Problem::invalid(format!("the body does not describe an order: {e}"), vec![])
        })?,
    };
    let rows = sqlx::query("SELECT product_id, price_cents FROM api_catalog")
        .fetch_all(&state.db.read)
        .await
        .map_err(Problem::internal)?;
    let mut prices = HashMap::new();
    for r in rows {
        let id: String = r.try_get(0).map_err(Problem::internal)?;
        let price: i64 = r.try_get(1).map_err(Problem::internal)?;
        prices.insert(id, price);
    }
    let mut errors = Vec::new();
    if order.customer_id.trim().is_empty() {
        errors.push("customer_id must not be empty".to_string());
    }
    if order.lines.is_empty() {
        errors.push("lines must hold at least one line".to_string());
    }
    let mut total = 0i64;
    for (i, l) in order.lines.iter().enumerate() {
        if l.quantity == 0 {
            errors.push(format!("lines[{i}].quantity must be at least 1"));
        }
        match prices.get(&l.product_id) {
            Some(p) => total += p * i64::from(l.quantity),
            None => errors.push(format!(
                "lines[{i}].product_id `{}` is not in the catalog",
                l.product_id
            )),
        }
    }
    if let Some(c) = &order.ship_to {
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(format!(
                "ship_to `{c}` must be a two-letter ISO country code"
            ));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors.join("; "), errors));
    }
    Ok((order, total))
}

/// Places an order: the order row and its `OrderPlaced` event commit in one transaction.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body = PlaceOrder,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Same key, same order: a retry never creates a second one"),
        ("X-Correlation-Id" = Option<String>, Header, description = "Carried by every message the order causes; generated when absent"),
    ),
    responses(
        (status = 202, description = "Accepted; the order is processed asynchronously", body = OrderAccepted,
         headers(("Location" = String, description = "/orders/{id}"), ("X-Correlation-Id" = String))),
        (status = 400, description = "Invalid order", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn place_order(
    State(state): State<AppState>,
    Extension(CorrelationId(correlation)): Extension<CorrelationId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(k) = &key {
        if let Some((id, total)) = by_key(&state.db.read, k).await? {
            return Ok(accepted(id, total, &correlation, true));
        }
    }
    let (order, total) = validate(&state, &body).await?;
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
                    if let Some(found) = key_row(work.conn(), k).await.map_err(db_err)? {
                        return Ok(Some(found));
                    }
                    sqlx::query("INSERT INTO api_idempotency (key, order_id) VALUES (?, ?)")
                        .bind(k)
                        .bind(id.to_string())
                        .execute(work.conn())
                        .await
                        .map_err(db_err)?;
                }
                sqlx::query(
                    "INSERT INTO api_orders (order_id, customer_id, total_cents, body, correlation_id, placed_at) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(id.to_string())
                .bind(&order.customer_id)
                .bind(total)
                .bind(json)
                .bind(&corr)
                .bind(placed_at.timestamp_micros())
                .execute(work.conn())
                .await
                .map_err(db_err)?;
                work.emit(&OrderPlaced {
                    order_id: id,
                    customer_id: order.customer_id,
                    lines: order.lines,
                    total_cents: total,
                    channel: order.notify_via.unwrap_or(Channel::Email),
                    ship_to: order.ship_to.unwrap_or_else(|| "US".into()),
                    placed_at,
                })?;
                Ok(None)
            })
        })
        .await
        .map_err(Problem::internal)?;
    match stored {
        Some((id, total)) => Ok(accepted(
            id.parse().map_err(Problem::internal)?,
            total,
            &correlation,
            true,
        )),
        None => Ok(accepted(id, total, &correlation, false)),
    }
}

/// The order a key was used for (order id, total).
async fn key_row<'c, E>(db: E, key: &str) -> Result<Option<(String, i64)>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query_as(
        "SELECT o.order_id, o.total_cents FROM api_idempotency k JOIN api_orders o ON o.order_id = k.order_id WHERE k.key = ?",
    )
    .bind(key)
    .fetch_optional(db)
    .await
}

async fn by_key<'c, E>(db: E, key: &str) -> Result<Option<(Uuid, i64)>, Problem>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let Some((id, total)) = key_row(db, key).await.map_err(Problem::internal)? else {
        return Ok(None);
    };
    Ok(Some((id.parse().map_err(Problem::internal)?, total)))
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
    let row = sqlx::query("SELECT status, reason FROM view_orders WHERE order_id = ?")
        .bind(uuid.to_string())
        .fetch_optional(&state.db.read)
        .await
        .map_err(Problem::internal)?;
    if let Some(row) = row {
        let status: String = row.try_get(0).map_err(Problem::internal)?;
        return Ok(Json(OrderStatus {
            id: uuid,
            status: Status::parse(&status),
            reason: row.try_get(1).map_err(Problem::internal)?,
        }));
    }
    // accepted but not yet seen by the read model
    let known = sqlx::query("SELECT 1 FROM api_orders WHERE order_id = ?")
        .bind(uuid.to_string())
        .fetch_optional(&state.db.read)
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
