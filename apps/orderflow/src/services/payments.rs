//! Payments: captures an order's payment through the gateway (idempotent by payment
//! intent = order id: charged at most once whatever the redeliveries) and refunds it as a
//! compensation. A refund that arrives before any capture voids the intent, so a late
//! capture is refused. Ordered by order id: one message per order at a time.

use sqlx::Row;
use tidings_core::{ConsumeContext, Endpoint, HandlerError};
use tracing::Instrument;

use super::gateway::{Charge, Gateway};
use crate::contracts::{
    CapturePayment, PaymentCaptured, PaymentFailed, PaymentRefunded, RefundPayment,
};
use crate::db::{db_err, Db, Work};

/// The endpoint's queue name.
pub const QUEUE: &str = "payments";

/// The payments endpoint (retry and redelivery policies are set by the caller).
pub fn endpoint(db: Db, gateway: Gateway) -> Endpoint {
    let (d2, g2) = (db.clone(), gateway.clone());
    Endpoint::new(QUEUE)
        .ordered(true)
        .handle_fn(move |m: CapturePayment, ctx: ConsumeContext| {
            let (db, gw) = (db.clone(), gateway.clone());
            let span = super::span(&ctx, m.order_id);
            async move { capture(&db, &gw, m, &ctx).await }.instrument(span)
        })
        .handle_fn(move |m: RefundPayment, ctx: ConsumeContext| {
            let (db, gw) = (d2.clone(), g2.clone());
            let span = super::span(&ctx, m.order_id);
            async move { refund(&db, &gw, m, &ctx).await }.instrument(span)
        })
        .sends::<PaymentCaptured>()
        .sends::<PaymentFailed>()
        .sends::<PaymentRefunded>()
}

async fn status(db: &Db, order: &str) -> Result<Option<(String, i64)>, HandlerError> {
    sqlx::query("SELECT status, amount_cents FROM pay_payments WHERE order_id = ?")
        .bind(order)
        .fetch_optional(&db.read)
        .await
        .map_err(db_err)?
        .map(|r| Ok((r.try_get("status")?, r.try_get("amount_cents")?)))
        .transpose()
        .map_err(db_err)
}

async fn set_status(
    work: &mut Work<'_>,
    order: &str,
    status: &str,
    amount: i64,
) -> Result<(), HandlerError> {
    sqlx::query(
        "INSERT INTO pay_payments (order_id, status, amount_cents, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
    )
    .bind(order)
    .bind(status)
    .bind(amount)
    .bind(chrono::Utc::now().timestamp_millis())
    .execute(work.conn())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// What a recorded payment status means for the saga.
fn outcome_of(status: &str) -> Result<(), String> {
    match status {
        "voided" | "refunded" => Err("voided: the order was cancelled before capture".to_string()),
        "declined" => Err("payment-declined".to_string()),
        _ => Ok(()),
    }
}

async fn capture(
    db: &Db,
    gw: &Gateway,
    m: CapturePayment,
    ctx: &ConsumeContext,
) -> Result<(), HandlerError> {
    let order = m.order_id.to_string();
    // The gateway is called outside any transaction (it takes time); it is idempotent by
    // payment intent (the order id), so a redelivery never charges twice.
    let prior = status(db, &order).await?;
    let outcome = match prior.as_ref() {
        Some((s, _)) => outcome_of(s),
        None => match gw.charge(&order, m.amount_cents).await {
            Ok(Charge::Captured) => Ok(()),
            Ok(Charge::Declined) => Err("payment-declined".to_string()),
            Err(e) => {
                tracing::info!(error = %e, attempt = ctx.attempt(), "gateway failed transiently");
                return Err(HandlerError::transient(e));
            }
        },
    };
    let fresh = prior.is_none();
    db.work(ctx, move |work| {
        Box::pin(record_capture(work, m, order, fresh, outcome))
    })
    .await?;
    Ok(())
}

/// Records the gateway's answer (first answer wins) and tells the saga.
async fn record_capture(
    work: &mut Work<'_>,
    m: CapturePayment,
    order: String,
    fresh: bool,
    outcome: Result<(), String>,
) -> Result<(), HandlerError> {
    let outcome = if fresh {
        let (status, amount) = match &outcome {
            Ok(()) => ("captured", m.amount_cents),
            Err(_) => ("declined", 0),
        };
        // Conditional: never overwrites a recorded outcome — except a void, when money did
        // move (then the saga, already cancelled, asks for the refund).
        sqlx::query(
            "INSERT INTO pay_payments (order_id, status, amount_cents, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at \
             WHERE pay_payments.status = 'voided' AND excluded.status = 'captured'",
        )
        .bind(&order)
        .bind(status)
        .bind(amount)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(work.conn())
        .await
        .map_err(db_err)?;
        let recorded: String =
            sqlx::query_scalar("SELECT status FROM pay_payments WHERE order_id = ?")
                .bind(&order)
                .fetch_one(work.conn())
                .await
                .map_err(db_err)?;
        outcome_of(&recorded)
    } else {
        outcome
    };
    match outcome {
        Ok(()) => work.emit(&PaymentCaptured {
            order_id: m.order_id,
            amount_cents: m.amount_cents,
        }),
        Err(reason) => work.emit(&PaymentFailed {
            order_id: m.order_id,
            reason,
        }),
    }
}

async fn refund(
    db: &Db,
    gw: &Gateway,
    m: RefundPayment,
    ctx: &ConsumeContext,
) -> Result<(), HandlerError> {
    let order = m.order_id.to_string();
    let prior = status(db, &order).await?;
    let refunded = match prior.as_ref().map(|(s, _)| s.as_str()) {
        Some("captured") => Some(gw.refund(&order).await.map_err(HandlerError::transient)?),
        _ => None,
    };
    let known = prior.is_some();
    tracing::info!(reason = %m.reason, "refund handled");
    db.work(ctx, move |work: &mut Work<'_>| {
        Box::pin(async move {
            match (known, refunded) {
                (true, Some(amount)) => {
                    set_status(work, &order, "refunded", amount).await?;
                    work.emit(&PaymentRefunded {
                        order_id: m.order_id,
                        amount_cents: amount,
                    })?;
                }
                // No capture yet: void the intent, so a late capture is refused.
                (false, _) => {
                    sqlx::query(
                        "INSERT INTO pay_payments (order_id, status, amount_cents, updated_at) \
                         VALUES (?, 'voided', 0, ?) ON CONFLICT (order_id) DO NOTHING",
                    )
                    .bind(&order)
                    .bind(chrono::Utc::now().timestamp_millis())
                    .execute(work.conn())
                    .await
                    .map_err(db_err)?;
                }
                _ => {}
            }
            Ok(())
        })
    })
    .await?;
    Ok(())
}
