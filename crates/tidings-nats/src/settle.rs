//! [`NatsSettle`]: settling a JetStream delivery.
//!
//! | Tidings | JetStream |
//! | --- | --- |
//! | ack | `+ACK` (confirmed by the server when `confirm_acks`) |
//! | nack(delay) | `-NAK {"delay": ..}` (the message stays pending on the consumer until then) |
//! | dead_letter | publish to `<prefix>.err.<queue>` (stream ack awaited), then `+TERM` (confirmed) |
//! | release | `-NAK` (redelivered at once; the server counts it as a delivery) |
//! | extend_lease | `+WPI` now, and again every `ack_wait / 2` until `by` is covered (a `+WPI` resets the timer to the consumer's `ack_wait`, the lease given to `receive`) |
//!
//! A delayed redelivery is not moved to the delay stream (unlike a scheduled message):
//! it keeps counting against the consumer's `max_ack_pending`, and on an ordered
//! partition (`max_ack_pending = 1`) it holds the partition until redelivered — which is
//! what per-key order needs (the retry must not be overtaken by the key's next message),
//! but other keys of the same partition wait too.
//!
//! A handle dropped unsettled sends `-NAK` from a spawned task, so the message comes back
//! at once instead of after the lease.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::{AckKind, Acker};
use async_trait::async_trait;
use tidings_core::transport::Settle;
use tidings_core::{Envelope, Result};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;

use crate::error::NatsError;
use crate::transport::Shared;

/// Settlement handle of one delivery.
pub(crate) struct NatsSettle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) acker: Option<Acker>,
    /// The delivery's reply subject (to build more ackers for the lease keeper).
    pub(crate) reply: Option<async_nats::Subject>,
    pub(crate) queue: String,
    /// Identifies this delivery for the error stream's de-duplication.
    pub(crate) dead_letter_id: String,
    /// A prefetch slot, given back when settled.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    /// Park this key when dead-lettering (ordered queue, `park_on_dead_letter`).
    pub(crate) park_key: Option<String>,
    /// The consumer's `ack_wait`.
    pub(crate) lease: Duration,
    /// Task renewing the lease (extend_lease beyond one `ack_wait`).
    pub(crate) keeper: Mutex<Option<JoinHandle<()>>>,
}

async fn send(acker: &Acker, kind: AckKind, confirm: bool) -> Result<()> {
    let r = if confirm {
        acker.double_ack_with(kind).await
    } else {
        acker.ack_with(kind).await
    };
    r.map_err(|e| NatsError::Settle(e.to_string()).into())
}

impl NatsSettle {
    fn stop_keeper(&self) {
        let mut k = self.keeper.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = k.take() {
            h.abort();
        }
    }

    async fn settle(mut self: Box<Self>, kind: AckKind, confirm: bool) -> Result<()> {
        self.stop_keeper();
        let acker = self.acker.take();
        self.permit.take();
        match acker {
            Some(a) => send(&a, kind, confirm).await,
            None => Ok(()),
        }
    }
}

impl Drop for NatsSettle {
    fn drop(&mut self) {
        self.stop_keeper();
        if let Some(acker) = self.acker.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = acker.ack_with(AckKind::Nak(None)).await;
                });
            }
        }
    }
}

#[async_trait]
impl Settle for NatsSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        let confirm = self.shared.cfg.confirm_acks;
        self.settle(AckKind::Ack, confirm).await
    }

    async fn nack(self: Box<Self>, delay: Duration, _updated: Option<Envelope>) -> Result<()> {
        // A stored JetStream message cannot be rewritten: updated headers are dropped.
        let kind = if delay.is_zero() {
            AckKind::Nak(None)
        } else {
            AckKind::Nak(Some(delay))
        };
        let confirm = self.shared.cfg.confirm_acks;
        self.settle(kind, confirm).await
    }

    async fn dead_letter(self: Box<Self>, envelope: Envelope) -> Result<()> {
        let subject = self.shared.names.error_subject(&self.queue);
        let msg = self.shared.prepare_to(
            subject,
            Some(tidings_core::transport::error_queue_name(&self.queue)),
            &envelope,
            &self.dead_letter_id,
        )?;
        self.shared.publish_all(vec![msg]).await?;
        if let Some(key) = &self.park_key {
            // Before TERM: the key's next message is held back until then, so it sees this.
            self.shared.park_key(&self.queue, key).await?;
        }
        // Confirmed: a lost TERM would redeliver and dead-letter twice.
        self.settle(AckKind::Term, true).await
    }

    async fn release(self: Box<Self>) -> Result<()> {
        self.settle(AckKind::Nak(None), false).await
    }

    async fn extend_lease(&self, by: Duration) -> Result<()> {
        let Some(acker) = &self.acker else {
            return Ok(());
        };
        self.stop_keeper();
        send(acker, AckKind::Progress, false).await?;
        if by > self.lease {
            let until = tokio::time::Instant::now() + by;
            let acker = Acker::new(self.shared.js.clone(), self.reply.clone());
            let lease = self.lease;
            let every = (lease / 2).max(Duration::from_millis(50));
            let h = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    // Covered once the current timer (now + lease) reaches `until`.
                    if tokio::time::Instant::now() + lease >= until + every {
                        break;
                    }
                    if acker.ack_with(AckKind::Progress).await.is_err() {
                        break;
                    }
                }
            });
            *self.keeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
        Ok(())
    }
}
