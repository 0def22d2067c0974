//! A simulated payment gateway ("the bank") that behaves like a real one (a PSP's payment
//! intents): every call names the payment intent (the order id, a key *we* own), and
//!
//! - [`Gateway::charge`] is idempotent by intent: a repeat returns the first outcome and
//!   never charges twice; an intent cancelled before its charge refuses it;
//! - [`Gateway::status`] tells what happened to an intent (nothing, captured, declined,
//!   voided, refunded) — the question to ask before deciding anything after a crash;
//! - [`Gateway::cancel`] is the idempotent compensation: it refunds a captured intent, or
//!   voids one not charged yet so that a late charge is refused (a PSP's "cancel payment
//!   intent").
//!
//! Its ledger (`gw_ledger`, one row per intent and kind) stands for the bank's records: it
//! is written in transactions of its own, never in the service's, so it keeps what
//! happened when the service is killed between calling the gateway and committing the
//! answer. Latency, transient failures (some of them *after* the effect, as when a
//! response is lost) and declines are configurable. The latency is spent before the ledger
//! is touched: the ledger write is a short job of its own ([`Db::write`]).

use std::time::Duration;

use rand::Rng;

use crate::args;
use crate::db::{Db, WriteError};
use crate::sql::{Reader, Tx};

/// How the simulated gateway behaves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Time one call takes.
    pub latency: Duration,
    /// Probability that a call fails transiently (half before, half after its effect).
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
    /// Money moved (now or by an earlier call for the same intent).
    Captured,
    /// The card was declined.
    Declined,
    /// The intent was cancelled (voided, or refunded) before this call: nothing charged.
    Cancelled,
}

/// What the gateway knows about an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentStatus {
    /// Never charged nor cancelled.
    Unknown,
    /// Charged this amount, not refunded.
    Captured(i64),
    /// The charge was declined.
    Declined,
    /// Cancelled before any charge; a later charge is refused.
    Voided,
    /// Charged, then this amount refunded.
    Refunded(i64),
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

/// The intent's state from its ledger rows.
fn fold(rows: Vec<(String, i64)>) -> IntentStatus {
    let mut status = IntentStatus::Unknown;
    for (kind, amount) in rows {
        status = match (kind.as_str(), status) {
            ("refund", _) => IntentStatus::Refunded(amount),
            (_, IntentStatus::Refunded(a)) => IntentStatus::Refunded(a),
            ("charge", _) => IntentStatus::Captured(amount),
            ("decline", _) => IntentStatus::Declined,
            ("void", _) => IntentStatus::Voided,
            (_, s) => s,
        };
    }
    status
}

const LEDGER: &str = "SELECT kind, amount_cents FROM gw_ledger WHERE intent = ? ORDER BY kind";

/// The intent's state, in a write transaction that holds the intent's lock: a charge
/// and a cancel of one intent never decide at once.
async fn intent_status(tx: &mut Tx<'_>, intent: &str) -> Result<IntentStatus, sqlx::Error> {
    tx.lock(&format!("gateway:{intent}")).await?;
    Ok(fold(tx.all(LEDGER, args![intent]).await?))
}

async fn read_status(read: &Reader, intent: &str) -> Result<IntentStatus, sqlx::Error> {
    Ok(fold(read.all(LEDGER, args![intent]).await?))
}

async fn record(
    tx: &mut Tx<'_>,
    intent: &str,
    kind: &str,
    amount_cents: i64,
) -> Result<(), sqlx::Error> {
    tx.exec(
        "INSERT INTO gw_ledger (intent, kind, amount_cents, at) VALUES (?, ?, ?, ?) \
         ON CONFLICT DO NOTHING",
        args![
            intent,
            kind,
            amount_cents,
            chrono::Utc::now().timestamp_millis()
        ],
    )
    .await?;
    Ok(())
}

impl Gateway {
    /// A gateway keeping its ledger in `db` (in transactions of its own).
    pub fn new(db: Db, config: GatewayConfig) -> Self {
        Gateway { db, config }
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && rand::rng().random_bool(p.clamp(0.0, 1.0))
    }

    async fn call_starts(&self, what: &'static str) -> Result<(), GatewayError> {
        tokio::time::sleep(self.config.latency).await;
        if self.roll(self.config.fail_rate / 2.0) {
            return Err(GatewayError::Unavailable(what));
        }
        Ok(())
    }

    fn answer<T>(&self, v: T, what: &'static str) -> Result<T, GatewayError> {
        if self.roll(self.config.fail_rate / 2.0) {
            return Err(GatewayError::Unavailable(what));
        }
        Ok(v)
    }

    /// Charges `amount_cents` for `intent` (the order id) at most once; a repeat returns the
    /// first outcome.
    pub async fn charge(&self, intent: &str, amount_cents: i64) -> Result<Charge, GatewayError> {
        self.call_starts("connection reset before charging").await?;
        let declined = self.roll(self.config.decline_rate);
        let intent = intent.to_string();
        // Look up and record in one transaction: two racing charges see one outcome.
        let outcome = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    Ok::<_, GatewayError>(match intent_status(tx, &intent).await? {
                        IntentStatus::Captured(_) => Charge::Captured,
                        IntentStatus::Declined => Charge::Declined,
                        IntentStatus::Voided | IntentStatus::Refunded(_) => Charge::Cancelled,
                        IntentStatus::Unknown if declined => {
                            record(tx, &intent, "decline", 0).await?;
                            Charge::Declined
                        }
                        IntentStatus::Unknown => {
                            record(tx, &intent, "charge", amount_cents).await?;
                            Charge::Captured
                        }
                    })
                })
            })
            .await?;
        self.answer(outcome, "response lost after charging")
    }

    /// What happened to `intent` so far.
    pub async fn status(&self, intent: &str) -> Result<IntentStatus, GatewayError> {
        self.call_starts("connection reset before the status answer")
            .await?;
        Ok(read_status(&self.db.read, intent).await?)
    }

    /// Cancels `intent`, idempotently: refunds its capture (at most once), or voids it when
    /// nothing was charged so that a later charge is refused. Returns the intent's status
    /// afterwards (`Refunded`, `Voided` or `Declined`).
    pub async fn cancel(&self, intent: &str) -> Result<IntentStatus, GatewayError> {
        self.call_starts("connection reset before cancelling")
            .await?;
        let intent = intent.to_string();
        let outcome = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    Ok::<_, GatewayError>(match intent_status(tx, &intent).await? {
                        IntentStatus::Captured(amount) => {
                            record(tx, &intent, "refund", amount).await?;
                            IntentStatus::Refunded(amount)
                        }
                        IntentStatus::Unknown => {
                            record(tx, &intent, "void", 0).await?;
                            IntentStatus::Voided
                        }
                        done => done,
                    })
                })
            })
            .await?;
        self.answer(outcome, "response lost after cancelling")
    }
}
