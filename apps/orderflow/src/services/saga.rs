//! The order saga (orchestration) on the framework's sagas ([`tidings_core::saga`]):
//! OrderPlaced → ReserveStock → CapturePayment → CreateShipment → OrderCompleted.
//!
//! Each step records the undo of what it started ([`Step::compensate_with`]: a reservation
//! is undone by ReleaseStock, a capture by RefundPayment); a failure (stock rejected,
//! payment declined, shipment failed, payment timeout) runs the recorded undos newest first
//! ([`Step::fail`]) and ends in OrderCancelled{reason}. A payment that does not answer
//! within the deadline cancels the order: a saga timeout (PaymentTimeout), dropped by the
//! framework if the saga moved on before it arrived. The timeout also asks payments to
//! refund, which voids an intent that was not captured yet, so a late capture is refused;
//! a capture that lands after the cancellation anyway is refunded. Refunds are idempotent
//! per order in payments, so two of them refund once.
//!
//! State: [`OrderSaga`] in the framework's saga table (`tidings_saga_instances`, saga
//! `order`), kept after completion for the reports (the view `saga_orders` shows it as the
//! reports read it). Each step runs in OrderFlow's unit of work ([`Db::work`]): inbox row,
//! saga state and outgoing messages commit together.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tidings_core::saga::{Completion, Decide, Saga, SagaState, SagaStore, Step, StepOutcome};
use tidings_core::{ConsumeContext, Endpoint, HandlerError};

use crate::contracts::*;
use crate::db::Db;
use crate::sql::Tx;

/// The endpoint's queue name.
pub const QUEUE: &str = "order-saga";

/// The saga's name (in the saga table).
pub const SAGA: &str = "order";

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

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Waiting for inventory.
    Reserving,
    /// Waiting for payments (a timeout is armed).
    Paying,
    /// Waiting for shipping.
    Shipping,
    /// Done.
    Completed,
    /// Cancelled (see the reason).
    Cancelled,
}

/// The order saga's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderSaga {
    /// The order.
    pub order: SagaData,
    /// Where it is.
    pub phase: Phase,
    /// Why it was cancelled.
    pub reason: Option<String>,
}

impl SagaState for OrderSaga {
    fn name(&self) -> &str {
        match self.phase {
            Phase::Reserving => "reserving",
            Phase::Paying => "paying",
            Phase::Shipping => "shipping",
            Phase::Completed => "completed",
            Phase::Cancelled => "cancelled",
        }
    }
}

impl OrderSaga {
    fn to(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    /// Fails the order: recorded undos newest first, then OrderCancelled.
    fn cancel(
        mut self,
        order_id: uuid::Uuid,
        reason: &str,
        step: &mut Step<'_>,
    ) -> Result<Self, HandlerError> {
        step.fail(reason)?;
        step.publish(&OrderCancelled {
            order_id,
            customer_id: self.order.customer_id.clone(),
            channel: self.order.channel,
            reason: reason.to_string(),
        })?;
        step.complete();
        tracing::info!(%order_id, reason, "order cancelled");
        self.reason = Some(reason.to_string());
        Ok(self.to(Phase::Cancelled))
    }
}

/// The saga definition; a payment not answered within `payment_timeout` cancels the order.
pub fn definition(payment_timeout: Duration) -> Saga<OrderSaga> {
    Saga::<OrderSaga>::new(SAGA)
        // The reports read every order's final state.
        .completion(Completion::Keep)
        .starts_with(
            |m: &OrderPlaced| m.order_id,
            |m, step| {
                step.send(&ReserveStock {
                    order_id: m.order_id,
                    lines: m.lines.clone(),
                })?;
                Ok(OrderSaga {
                    order: SagaData {
                        customer_id: m.customer_id.clone(),
                        lines: m.lines.clone(),
                        total_cents: m.total_cents,
                        channel: m.channel,
                        ship_to: m.ship_to.clone(),
                    },
                    phase: Phase::Reserving,
                    reason: None,
                })
            },
        )
        .on(
            |m: &StockReserved| m.order_id,
            move |s, m, step| match s.phase {
                Phase::Reserving => {
                    let id = m.order_id;
                    step.compensate_with(&ReleaseStock { order_id: id })?;
                    step.send(&CapturePayment {
                        order_id: id,
                        customer_id: s.order.customer_id.clone(),
                        amount_cents: s.order.total_cents,
                    })?;
                    step.request_timeout(&PaymentTimeout { order_id: id }, payment_timeout)?;
                    Ok(s.to(Phase::Paying))
                }
                _ => Ok(s),
            },
        )
        .on(
            |m: &StockRejected| m.order_id,
            |s, m, step| match s.phase {
                Phase::Reserving => s.cancel(m.order_id, &m.reason, step),
                _ => Ok(s),
            },
        )
        .on(
            |m: &PaymentCaptured| m.order_id,
            |s, m, step| match s.phase {
                Phase::Paying => {
                    let id = m.order_id;
                    step.compensate_with(&RefundPayment {
                        order_id: id,
                        reason: "order cancelled after capture".into(),
                    })?;
                    step.send(&CreateShipment {
                        order_id: id,
                        ship_to: s.order.ship_to.clone(),
                        lines: s.order.lines.clone(),
                    })?;
                    Ok(s.to(Phase::Shipping))
                }
                Phase::Cancelled => {
                    // A capture that lands after the deadline cancelled the order: give it back.
                    step.send(&RefundPayment {
                        order_id: m.order_id,
                        reason: "captured after cancellation".into(),
                    })?;
                    Ok(s)
                }
                _ => Ok(s),
            },
        )
        .on(
            |m: &PaymentFailed| m.order_id,
            |s, m, step| match s.phase {
                Phase::Paying => s.cancel(m.order_id, &m.reason, step),
                _ => Ok(s),
            },
        )
        .on(
            |m: &PaymentTimeout| m.order_id,
            |s, m, step| match s.phase {
                Phase::Paying => {
                    // The capture may be in flight: void the intent (or refund it if it went
                    // through), then undo the reservation.
                    step.send(&RefundPayment {
                        order_id: m.order_id,
                        reason: "payment-timeout".into(),
                    })?;
                    s.cancel(m.order_id, "payment-timeout", step)
                }
                _ => Ok(s),
            },
        )
        .on(
            |m: &ShipmentCreated| m.order_id,
            |s, m, step| match s.phase {
                Phase::Shipping => {
                    step.clear_compensations();
                    step.publish(&OrderCompleted {
                        order_id: m.order_id,
                        customer_id: s.order.customer_id.clone(),
                        channel: s.order.channel,
                        total_cents: s.order.total_cents,
                    })?;
                    step.complete();
                    Ok(s.to(Phase::Completed))
                }
                _ => Ok(s),
            },
        )
        .on(
            |m: &ShipmentFailed| m.order_id,
            |s, m, step| match s.phase {
                Phase::Shipping => s.cancel(m.order_id, &m.reason, step),
                _ => Ok(s),
            },
        )
}

/// Saga steps in OrderFlow's unit of work ([`Db::work`]): the inbox row, the saga row and
/// the outgoing messages in one transaction (on the SQLite transport a job of its writer;
/// otherwise the write pool + the outbox table).
#[derive(Debug, Clone)]
pub struct DbSagaStore {
    db: Db,
}

impl DbSagaStore {
    /// Saga steps on `db`.
    pub fn new(db: Db) -> Self {
        DbSagaStore { db }
    }
}

#[async_trait]
impl SagaStore for DbSagaStore {
    async fn step(
        &self,
        saga: &str,
        key: &str,
        ctx: &ConsumeContext,
        decide: Decide,
    ) -> Result<StepOutcome, HandlerError> {
        let (saga, key) = (saga.to_string(), key.to_string());
        let prefix = self
            .db
            .pg_sink()
            .map(|(names, _)| format!("{}.", names.schema("saga")));
        let done = self
            .db
            .work(ctx, move |work| {
                Box::pin(async move {
                    let out = match (&mut **work, prefix) {
                        (Tx::Sqlite(conn), _) => {
                            tidings_sqlite::saga::step_in(conn, &saga, &key, decide).await?
                        }
                        (Tx::Pg(t, _), Some(prefix)) => {
                            tidings_postgres::saga::step_in(t, &prefix, &saga, &key, decide).await?
                        }
                        (Tx::Pg(..), None) => {
                            return Err(HandlerError::permanent("no saga schema"));
                        }
                    };
                    work.push(out);
                    Ok(())
                })
            })
            .await?;
        Ok(match done {
            Some(()) => StepOutcome::Applied,
            None => StepOutcome::Duplicate,
        })
    }
}

/// The reports' view of the saga: `saga_orders(order_id, state, reason, version)`.
const VIEW: &str = "CREATE VIEW IF NOT EXISTS saga_orders AS \
    SELECT key AS order_id, state, json_extract(data, '$.reason') AS reason, version \
    FROM tidings_saga_instances WHERE saga = 'order'";

/// Creates the saga table and the `saga_orders` view (idempotent). A database written by
/// an older OrderFlow has a `saga_orders` table instead: refused with a message. (On
/// PostgreSQL both are created with the schema: [`crate::pg::apply_schema`].)
pub async fn prepare(db: &Db) -> anyhow::Result<()> {
    if db.is_pg() {
        return Ok(());
    }
    db.write(|tx: &mut Tx<'_>| {
        Box::pin(async move {
            let Tx::Sqlite(conn) = tx else {
                return Ok(());
            };
            let kind: Option<String> =
                sqlx::query_scalar("SELECT type FROM sqlite_master WHERE name = 'saga_orders'")
                    .fetch_optional(&mut **conn)
                    .await?;
            if kind.as_deref() == Some("table") {
                return Err(HandlerError::permanent(
                    "this data dir was written by an OrderFlow with the hand-written saga \
                     (table saga_orders): start on a fresh data dir",
                ));
            }
            tidings_sqlite::saga::create_table(conn).await?;
            sqlx::raw_sql(VIEW).execute(&mut **conn).await?;
            Ok::<_, HandlerError>(())
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The saga endpoint; a payment not answered within `payment_timeout` cancels the order.
pub fn endpoint(db: Db, payment_timeout: Duration) -> Endpoint {
    let ep = Endpoint::new(QUEUE)
        .ordered(true)
        .sends::<ReserveStock>()
        .sends::<CapturePayment>()
        .sends::<PaymentTimeout>()
        .sends::<CreateShipment>()
        .sends::<ReleaseStock>()
        .sends::<RefundPayment>()
        .sends::<OrderCompleted>()
        .sends::<OrderCancelled>();
    definition(payment_timeout)
        .attach(ep, Arc::new(DbSagaStore::new(db)))
        .upcast::<OrderPlacedV1, OrderPlaced>()
}
