//! The order read model (choreography): `view_orders`, fed by events, answers
//! `GET /orders/{id}`. Updates are idempotent and monotonic (a status only moves forward),
//! so duplicates and out-of-order events are harmless without an inbox.

use chrono::{DateTime, Utc};
use tidings_core::{ConsumeContext, Endpoint, HandlerError};
use uuid::Uuid;

use crate::args;
use crate::contracts::{
    OrderCancelled, OrderCompleted, OrderPlaced, OrderPlacedV1, PaymentCaptured, ShipmentCreated,
    StockReserved,
};
use crate::db::Db;

/// The endpoint's queue name.
pub const QUEUE: &str = "order-view";

/// Final status rank.
pub const FINAL_RANK: i64 = 9;

macro_rules! upsert {
    ($col:literal) => {
        concat!(
            "INSERT INTO view_orders (order_id, status, rank, reason, ",
            $col,
            ") VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET ",
            "status = CASE WHEN excluded.rank > view_orders.rank THEN excluded.status ELSE view_orders.status END, ",
            "reason = CASE WHEN excluded.rank > view_orders.rank THEN excluded.reason ELSE view_orders.reason END, ",
            "rank = CASE WHEN excluded.rank > view_orders.rank THEN excluded.rank ELSE view_orders.rank END, ",
            $col,
            " = COALESCE(view_orders.",
            $col,
            ", excluded.",
            $col,
            ")"
        )
    };
}

async fn advance(
    db: &Db,
    order: Uuid,
    status: &str,
    rank: i64,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let sql = match rank {
        0 => upsert!("placed_at"),
        1 => upsert!("reserved_at"),
        2 => upsert!("paid_at"),
        3 => upsert!("shipped_at"),
        _ => upsert!("final_at"),
    };
    let (order, status, reason) = (
        order.to_string(),
        status.to_string(),
        reason.map(str::to_string),
    );
    db.write(move |tx| {
        Box::pin(async move {
            tx.exec(
                sql,
                args![order, status, rank, reason, at.timestamp_micros()],
            )
            .await?;
            Ok::<_, HandlerError>(())
        })
    })
    .await
}

fn sent(ctx: &ConsumeContext) -> DateTime<Utc> {
    ctx.envelope().sent_at
}

/// The read-model endpoint.
pub fn endpoint(db: Db) -> Endpoint {
    let (d1, d2, d3, d4, d5) = (db.clone(), db.clone(), db.clone(), db.clone(), db.clone());
    Endpoint::new(QUEUE)
        .handle_fn(move |m: OrderPlaced, _ctx: ConsumeContext| {
            let db = db.clone();
            async move { advance(&db, m.order_id, "Pending", 0, None, m.placed_at).await }
        })
        .upcast::<OrderPlacedV1, OrderPlaced>()
        .handle_fn(move |m: StockReserved, ctx: ConsumeContext| {
            let db = d1.clone();
            async move { advance(&db, m.order_id, "StockReserved", 1, None, sent(&ctx)).await }
        })
        .handle_fn(move |m: PaymentCaptured, ctx: ConsumeContext| {
            let db = d2.clone();
            async move { advance(&db, m.order_id, "Paid", 2, None, sent(&ctx)).await }
        })
        .handle_fn(move |m: ShipmentCreated, ctx: ConsumeContext| {
            let db = d3.clone();
            async move { advance(&db, m.order_id, "Shipped", 3, None, sent(&ctx)).await }
        })
        .handle_fn(move |m: OrderCompleted, ctx: ConsumeContext| {
            let db = d4.clone();
            async move { advance(&db, m.order_id, "Completed", FINAL_RANK, None, sent(&ctx)).await }
        })
        .handle_fn(move |m: OrderCancelled, ctx: ConsumeContext| {
            let db = d5.clone();
            async move {
                advance(
                    &db,
                    m.order_id,
                    "Cancelled",
                    FINAL_RANK,
                    Some(&m.reason),
                    sent(&ctx),
                )
                .await
            }
        })
}
