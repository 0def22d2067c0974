//! The order saga (orchestration): OrderPlaced → ReserveStock → CapturePayment →
//! CreateShipment → OrderCompleted. Any failure runs the compensations that apply (release
//! stock, refund) and ends in OrderCancelled{reason}. A payment that does not answer within
//! the deadline cancels the order (a PaymentTimeout scheduled to this endpoint). State lives
//! in `saga_orders` with optimistic concurrency (version column); the endpoint is ordered by
//! order id, so conflicts are rare and retried when they happen.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use tidings_core::{ConsumeContext, Endpoint, HandlerError};
use tracing::Instrument;
use uuid::Uuid;

use crate::contracts::*;
use crate::db::{db_err, Db, Work};

/// The endpoint's queue name.
pub const QUEUE: &str = "order-saga";

/// What the saga remembers about an order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SagaData {
    /// Who ordered.
    pub customer_id: String,
    /// What.
    pub lines: Vec<OrderLine>,
    /// Total in cents.
    pub total_cents: i64,
    /// Notification channel.
    pub channel: Channel,
    /// Destination country.
    pub ship_to: String,
}

/// One saga instance as stored.
#[derive(Debug, Clone)]
struct Saga {
    order_id: Uuid,
    state: String,
    data: SagaData,
    version: i64,
}

/// What happened to the order.
#[derive(Debug)]
enum Input {
    Reserved,
    Rejected(String),
    Captured,
    PaymentFailed(String),
    Shipped,
    ShipFailed(String),
    Timeout,
}

async fn load(work: &mut Work<'_>, order_id: Uuid) -> Result<Option<Saga>, HandlerError> {
    let row = sqlx::query("SELECT state, data, version FROM saga_orders WHERE order_id = ?")
        .bind(order_id.to_string())
        .fetch_optional(work.conn())
        .await
        .map_err(db_err)?;
    let Some(row) = row else { return Ok(None) };
    let data: String = row.try_get("data").map_err(db_err)?;
    Ok(Some(Saga {
        order_id,
        state: row.try_get("state").map_err(db_err)?,
        data: serde_json::from_str(&data)
            .map_err(|e| HandlerError::permanent(format!("saga state of {order_id}: {e}")))?,
        version: row.try_get("version").map_err(db_err)?,
    }))
}

async fn save(work: &mut Work<'_>, saga: &Saga, reason: Option<&str>) -> Result<(), HandlerError> {
    let saved = sqlx::query(
        "UPDATE saga_orders SET state = ?, reason = COALESCE(?, reason), version = version + 1 \
         WHERE order_id = ? AND version = ?",
    )
    .bind(&saga.state)
    .bind(reason)
    .bind(saga.order_id.to_string())
    .bind(saga.version)
    .execute(work.conn())
    .await
    .map_err(db_err)?
    .rows_affected();
    if saved == 0 {
        return Err(HandlerError::transient(format!(
            "saga {} changed concurrently (expected version {})",
            saga.order_id, saga.version
        )));
    }
    Ok(())
}

async fn start(db: &Db, m: OrderPlaced, ctx: &ConsumeContext) -> Result<(), HandlerError> {
    db.work(ctx, move |work| Box::pin(start_in(work, m)))
        .await?;
    Ok(())
}

async fn start_in(work: &mut Work<'_>, m: OrderPlaced) -> Result<(), HandlerError> {
    let data = SagaData {
        customer_id: m.customer_id,
        lines: m.lines.clone(),
        total_cents: m.total_cents,
        channel: m.channel,
        ship_to: m.ship_to,
    };
    let json = serde_json::to_string(&data).map_err(HandlerError::permanent)?;
    let fresh = sqlx::query(
        "INSERT INTO saga_orders (order_id, state, data, version) VALUES (?, 'reserving', ?, 1) \
         ON CONFLICT DO NOTHING",
    )
    .bind(m.order_id.to_string())
    .bind(json)
    .execute(work.conn())
    .await
    .map_err(db_err)?
    .rows_affected()
        == 1;
    if fresh {
        work.emit(&ReserveStock {
            order_id: m.order_id,
            lines: m.lines,
        })?;
    }
    Ok(())
}

async fn step(
    db: &Db,
    ctx: &ConsumeContext,
    order_id: Uuid,
    input: Input,
    payment_timeout: Duration,
) -> Result<(), HandlerError> {
    db.work(ctx, move |work| {
        Box::pin(step_in(work, order_id, input, payment_timeout))
    })
    .await?;
    Ok(())
}

async fn step_in(
    work: &mut Work<'_>,
    order_id: Uuid,
    input: Input,
    payment_timeout: Duration,
) -> Result<(), HandlerError> {
    let Some(mut saga) = load(work, order_id).await? else {
        if matches!(input, Input::Timeout) {
            // The saga schedules its own timeout after it starts, so a timeout without a
            // saga belongs to another database (e.g. an earlier run on a shared broker).
            tracing::warn!(%order_id, "payment timeout for an unknown order ignored");
            return Ok(());
        }
        return Err(HandlerError::transient(format!(
            "no saga for order {order_id} yet"
        )));
    };
    let id = order_id;
    let d = saga.data.clone();
    let mut reason = None;
    let next = match (saga.state.as_str(), input) {
        ("reserving", Input::Reserved) => {
            work.emit(&CapturePayment {
                order_id: id,
                customer_id: d.customer_id.clone(),
                amount_cents: d.total_cents,
            })?;
            work.emit_delayed(&PaymentTimeout { order_id: id }, payment_timeout)?;
            Some("paying")
        }
        ("reserving", Input::Rejected(r)) => {
            reason = Some(r);
            Some("cancelled")
        }
        ("paying", Input::Captured) => {
            work.emit(&CreateShipment {
                order_id: id,
                ship_to: d.ship_to.clone(),
                lines: d.lines.clone(),
            })?;
            Some("shipping")
        }
        ("paying", Input::PaymentFailed(r)) => {
            work.emit(&ReleaseStock { order_id: id })?;
            reason = Some(r);
            Some("cancelled")
        }
        ("paying", Input::Timeout) => {
            work.emit(&ReleaseStock { order_id: id })?;
            work.emit(&RefundPayment {
                order_id: id,
                reason: "payment-timeout".into(),
            })?;
            reason = Some("payment-timeout".to_string());
            Some("cancelled")
        }
        ("shipping", Input::Shipped) => {
            work.emit(&OrderCompleted {
                order_id: id,
                customer_id: d.customer_id.clone(),
                channel: d.channel,
                total_cents: d.total_cents,
            })?;
            Some("completed")
        }
        ("shipping", Input::ShipFailed(r)) => {
            work.emit(&ReleaseStock { order_id: id })?;
            work.emit(&RefundPayment {
                order_id: id,
                reason: r.clone(),
            })?;
            reason = Some(r);
            Some("cancelled")
        }
        ("cancelled", Input::Captured) => {
            // A capture that lands after the deadline cancelled the order: give it back.
            work.emit(&RefundPayment {
                order_id: id,
                reason: "captured after cancellation".into(),
            })?;
            None
        }
        (state, input) => {
            tracing::debug!(state, ?input, "saga: nothing to do");
            None
        }
    };
    if let Some(next) = next {
        if let Some(r) = &reason {
            work.emit(&OrderCancelled {
                order_id: id,
                customer_id: d.customer_id.clone(),
                channel: d.channel,
                reason: r.clone(),
            })?;
            tracing::info!(reason = %r, "order cancelled");
        }
        saga.state = next.to_string();
        save(work, &saga, reason.as_deref()).await?;
    }
    Ok(())
}

/// The saga endpoint; a payment not answered within `payment_timeout` cancels the order.
pub fn endpoint(db: Db, payment_timeout: Duration) -> Endpoint {
    macro_rules! on {
        ($ep:expr, $ty:ty, |$m:ident| $input:expr) => {{
            let db = db.clone();
            $ep.handle_fn(move |$m: $ty, ctx: ConsumeContext| {
                let db = db.clone();
                let span = super::span(&ctx, $m.order_id);
                let order_id = $m.order_id;
                let input = $input;
                async move { step(&db, &ctx, order_id, input, payment_timeout).await }
                    .instrument(span)
            })
        }};
    }
    let d0 = db.clone();
    let ep = Endpoint::new(QUEUE)
        .ordered(true)
        .handle_fn(move |m: OrderPlaced, ctx: ConsumeContext| {
            let db = d0.clone();
            let span = super::span(&ctx, m.order_id);
            async move { start(&db, m, &ctx).await }.instrument(span)
        })
        .upcast::<OrderPlacedV1, OrderPlaced>();
    let ep = on!(ep, StockReserved, |m| Input::Reserved);
    let ep = on!(ep, StockRejected, |m| Input::Rejected(m.reason));
    let ep = on!(ep, PaymentCaptured, |m| Input::Captured);
    let ep = on!(ep, PaymentFailed, |m| Input::PaymentFailed(m.reason));
    let ep = on!(ep, ShipmentCreated, |m| Input::Shipped);
    let ep = on!(ep, ShipmentFailed, |m| Input::ShipFailed(m.reason));
    let ep = on!(ep, PaymentTimeout, |m| Input::Timeout);
    ep.sends::<ReserveStock>()
        .sends::<CapturePayment>()
        .sends::<PaymentTimeout>()
        .sends::<CreateShipment>()
        .sends::<ReleaseStock>()
        .sends::<RefundPayment>()
        .sends::<OrderCompleted>()
        .sends::<OrderCancelled>()
}
