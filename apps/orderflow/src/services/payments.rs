//! Payments: captures an order's payment through the gateway (idempotent by payment
//! intent = order id: charged at most once whatever the redeliveries or kills) and refunds
//! it as a compensation, asking the gateway rather than our own table (see
//! `docs/effects.md`): a refund that finds no capture voids the intent at the gateway, so a
//! late capture is refused there. Ordered by order id: one message per order at a time.

use tidings_core::{ConsumeContext, Endpoint, HandlerError, ResultExt};
use tracing::Instrument;

use super::gateway::{Charge, Gateway, IntentStatus};
use crate::args;
use crate::contracts::{
    CapturePayment, PaymentCaptured, PaymentFailed, PaymentRefunded, RefundPayment,
};
use crate::db::{Db, Work};

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
    Ok(db
        .read
        .opt(
            "SELECT status, amount_cents FROM pay_payments WHERE order_id = ?",
            args![order],
        )
        .await?)
}

async fn set_status(
    work: &mut Work<'_>,
    order: &str,
    status: &str,
    amount: i64,
) -> Result<(), HandlerError> {
    work.exec(
        "INSERT INTO pay_payments (order_id, status, amount_cents, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
        args![order, status, amount, chrono::Utc::now().timestamp_millis()],
    )
    .await?;
    Ok(())
}

fn outcome_of(status: &str) -> Result<(), String> {
    match status {
        "voided" | "refunded" => Err("voided: the order was cancelled before capture".to_string()),
        "declined" => Err("payment-declined".to_string()),
        _ => Ok(()),
    }
}

/// Captures the payment. The gateway is called outside any transaction (it takes time),
/// then its answer is committed with the inbox row and the message to the saga. A kill
/// between the two leaves a charge we did not record: the redelivery charges again, and
/// the gateway, idempotent by intent (the order id), answers the first outcome without
/// charging twice — or `Cancelled` if a refund cancelled the intent meanwhile.
async fn capture(
    db: &Db,
    gw: &Gateway,
    m: CapturePayment,
    ctx: &ConsumeContext,
) -> Result<(), HandlerError> {
    let order = m.order_id.to_string();
    let status = match status(db, &order).await? {
        // Recorded by a refund that came first (we never record a capture without
        // committing its message, so a recorded capture is a duplicate the inbox drops).
        Some((s, _)) => s,
        None => match gw.charge(&order, m.amount_cents).await {
            Ok(Charge::Captured) => "captured".to_string(),
            Ok(Charge::Declined) => "declined".to_string(),
            Ok(Charge::Cancelled) => "voided".to_string(),
            Err(e) => {
                tracing::info!(error = %e, attempt = ctx.attempt(), "gateway failed transiently");
                return Err(HandlerError::transient(e));
            }
        },
    };
    db.work(ctx, move |work| {
        Box::pin(record_capture(work, m, order, status))
    })
    .await?;
    Ok(())
}

/// Records the gateway's answer (a status already recorded wins: the gateway's answer to a
/// cancelled intent agrees with it) and tells the saga.
async fn record_capture(
    work: &mut Work<'_>,
    m: CapturePayment,
    order: String,
    status: String,
) -> Result<(), HandlerError> {
    let amount = if status == "captured" {
        m.amount_cents
    } else {
        0
    };
    work.exec(
        "INSERT INTO pay_payments (order_id, status, amount_cents, updated_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (order_id) DO NOTHING",
        args![&order, &status, amount, chrono::Utc::now().timestamp_millis()],
    )
    .await?;
    let (recorded,): (String,) = work
        .one(
            "SELECT status FROM pay_payments WHERE order_id = ?",
            args![&order],
        )
        .await?;
    match outcome_of(&recorded) {
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

/// Refunds (compensation). The decision is never taken from our table alone: a capture may
/// have charged and been killed before recording it. The gateway's idempotent `cancel`
/// asks the bank's side — it refunds a charge, or voids an intent not charged yet so that
/// a capture still on its way is refused — and its answer is recorded.
async fn refund(
    db: &Db,
    gw: &Gateway,
    m: RefundPayment,
    ctx: &ConsumeContext,
) -> Result<(), HandlerError> {
    let order = m.order_id.to_string();
    let after = gw.cancel(&order).await.transient()?; // ResultExt: any Error, retried
    tracing::info!(reason = %m.reason, ?after, "refund handled");
    db.work(ctx, move |work: &mut Work<'_>| {
        Box::pin(async move {
            match after {
                IntentStatus::Refunded(amount) => {
                    set_status(work, &order, "refunded", amount).await?;
                    work.emit(&PaymentRefunded {
                        order_id: m.order_id,
                        amount_cents: amount,
                    })?;
                }
                IntentStatus::Voided => set_status(work, &order, "voided", 0).await?,
                // Declined (nothing to give back), or an answer `cancel` does not give.
                _ => {}
            }
            Ok(())
        })
    })
    .await?;
    Ok(())
}
