//! A simulated payment gateway ("the bank"), idempotent by payment intent like real ones:
//! charging the same intent twice returns the first outcome and never charges twice. Its
//! ledger (`gw_ledger`) stands for the bank's records. Latency, transient failures (some
//! of them *after* the charge went through, as when a response is lost) and declines are
//! configurable. The latency is spent before the ledger is touched: the ledger write is a
//! short job of its own ([`Db::write`]), never holding the database while "the bank" thinks.

use std::time::Duration;

use rand::Rng;
use sqlx::Row;

use crate::db::{Db, WriteError};

/// How the simulated gateway behaves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Time one call takes.
    pub latency: Duration,
    /// Probability that a call fails transiently (half before, half after charging).
    pub fail_rate: f64,
    /// Probability that a charge is declined.
    pub decline_rate: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            latency: Duration::from_millis(5),
            fail_rate: 0.1,
            decline_rate: 0.05,
        }
    }
}

/// How a charge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Money moved.
    Captured,
    /// The card was declined.
    Declined,
}

/// A gateway failure worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Timeout / connection reset (simulated).
    #[error("gateway unavailable: {0}")]
    Unavailable(&'static str),
    /// The ledger could not be written.
    #[error("gateway ledger: {0}")]
    Ledger(#[from] sqlx::Error),
    /// The ledger's write did not commit.
    #[error("gateway ledger: {0}")]
    Write(#[from] WriteError),
}

/// The simulated gateway.
#[derive(Debug, Clone)]
pub struct Gateway {
    db: Db,
    config: GatewayConfig,
}

impl Gateway {
    /// A gateway keeping its ledger in `db`.
    pub fn new(db: Db, config: GatewayConfig) -> Self {
        Gateway { db, config }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && rand::rng().random_bool(p.clamp(0.0, 1.0))
    }

    /// Charges `amount_cents` for `intent` (the order id) at most once.
    pub async fn charge(&self, intent: &str, amount_cents: i64) -> Result<Charge, GatewayError> {
        tokio::time::sleep(self.config.latency).await;
        if self.roll(self.config.fail_rate / 2.0) {
            return Err(GatewayError::Unavailable(
                "connection reset before charging",
            ));
        }
        let declined = self.roll(self.config.decline_rate);
        let intent = intent.to_string();
        // Look up and record in one write: two racing charges of an intent see one outcome.
        let outcome = self
            .db
            .write(move |conn| {
                Box::pin(async move {
                    let prior: Option<String> = sqlx::query(
                        "SELECT kind FROM gw_ledger WHERE intent = ? AND kind IN ('charge', 'decline')",
                    )
                    .bind(&intent)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|row| row.try_get("kind"))
                    .transpose()?;
                    let kind = match prior {
                        Some(kind) => kind,
                        None => {
                            let kind = if declined { "decline" } else { "charge" };
                            sqlx::query(
                                "INSERT INTO gw_ledger (intent, kind, amount_cents, at) \
                                 VALUES (?, ?, ?, ?)",
                            )
                            .bind(&intent)
                            .bind(kind)
                            .bind(if declined { 0 } else { amount_cents })
                            .bind(chrono::Utc::now().timestamp_millis())
                            .execute(&mut *conn)
                            .await?;
                            kind.to_string()
                        }
                    };
                    Ok::<_, GatewayError>(if kind == "charge" {
                        Charge::Captured
                    } else {
                        Charge::Declined
                    })
                })
            })
            .await?;
        if self.roll(self.config.fail_rate / 2.0) {
            return Err(GatewayError::Unavailable("response lost after charging"));
        }
        Ok(outcome)
    }

    /// Refunds the capture of `intent`, at most once. Returns the amount refunded.
    pub async fn refund(&self, intent: &str) -> Result<i64, GatewayError> {
        tokio::time::sleep(self.config.latency).await;
        if self.roll(self.config.fail_rate / 2.0) {
            return Err(GatewayError::Unavailable(
                "connection reset before refunding",
            ));
        }
        let intent = intent.to_string();
        self.db
            .write(move |conn| {
                Box::pin(async move {
                    let charged: Option<i64> = sqlx::query(
                        "SELECT amount_cents FROM gw_ledger WHERE intent = ? AND kind = 'charge'",
                    )
                    .bind(&intent)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                    let amount = charged.unwrap_or(0);
                    if amount > 0 {
                        sqlx::query(
                            "INSERT INTO gw_ledger (intent, kind, amount_cents, at) \
                             VALUES (?, 'refund', ?, ?) ON CONFLICT DO NOTHING",
                        )
                        .bind(&intent)
                        .bind(amount)
                        .bind(chrono::Utc::now().timestamp_millis())
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok::<_, GatewayError>(amount)
                })
            })
            .await
    }
}
