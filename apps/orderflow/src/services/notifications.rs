//! Notifications: tells the customer how their order ended, on their channel (e-mail, SMS,
//! push) through a [`Sink`]. Exactly one notification per order: the inbox drops duplicate
//! deliveries and `notif_sent` (unique per order) drops a second outcome message.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tidings_core::{ConsumeContext, Endpoint, HandlerError};
use tracing::Instrument;
use uuid::Uuid;

use crate::contracts::{Channel, OrderCancelled, OrderCompleted};
use crate::db::{db_err, Db, Work};

/// The endpoint's queue name.
pub const QUEUE: &str = "notifications";

/// One message to a customer.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// The order.
    pub order_id: Uuid,
    /// The customer.
    pub customer_id: String,
    /// How.
    pub channel: Channel,
    /// `confirmation` or `cancellation`.
    pub kind: &'static str,
    /// The text.
    pub text: String,
}

/// Where notifications go (an e-mail/SMS/push provider in production).
pub trait Sink: Send + Sync + 'static {
    /// Delivers one notification.
    fn deliver(&self, n: &Notification) -> std::io::Result<()>;
}

/// Appends one JSON line per notification to a file.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl FileSink {
    /// Opens (appending) `path`.
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(FileSink {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Sink for FileSink {
    fn deliver(&self, n: &Notification) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(n)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&line)
    }
}

/// The notifications endpoint.
pub fn endpoint(db: Db, sink: Arc<dyn Sink>) -> Endpoint {
    let (d2, s2) = (db.clone(), sink.clone());
    Endpoint::new(QUEUE)
        .handle_fn(move |m: OrderCompleted, ctx: ConsumeContext| {
            let (db, sink) = (db.clone(), sink.clone());
            let span = super::span(&ctx, m.order_id);
            let n = Notification {
                order_id: m.order_id,
                customer_id: m.customer_id,
                channel: m.channel,
                kind: "confirmation",
                text: format!(
                    "Your order is on its way ({} cents charged).",
                    m.total_cents
                ),
            };
            async move { notify(&db, sink.as_ref(), n, &ctx).await }.instrument(span)
        })
        .handle_fn(move |m: OrderCancelled, ctx: ConsumeContext| {
            let (db, sink) = (d2.clone(), s2.clone());
            let span = super::span(&ctx, m.order_id);
            let n = Notification {
                order_id: m.order_id,
                customer_id: m.customer_id,
                channel: m.channel,
                kind: "cancellation",
                text: format!("Your order was cancelled: {}.", m.reason),
            };
            async move { notify(&db, sink.as_ref(), n, &ctx).await }.instrument(span)
        })
}

async fn notify(
    db: &Db,
    sink: &dyn Sink,
    n: Notification,
    ctx: &ConsumeContext,
) -> Result<(), HandlerError> {
    let (order_id, kind, channel) = (n.order_id.to_string(), n.kind, n.channel.as_str());
    let fresh = db
        .work(ctx, move |work: &mut Work<'_>| {
            Box::pin(async move {
                let n = sqlx::query(
                    "INSERT INTO notif_sent (order_id, kind, channel) VALUES (?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(order_id)
                .bind(kind)
                .bind(channel)
                .execute(work.conn())
                .await
                .map_err(db_err)?
                .rows_affected();
                Ok(n == 1)
            })
        })
        .await?;
    // After the commit (a duplicate delivery is `None`): at most one notification.
    if fresh == Some(true) {
        sink.deliver(&n)
            .map_err(|e| HandlerError::permanent(format!("notification sink: {e}")))?;
    }
    Ok(())
}

/// Drops every notification (for `orderflow topology` and tests that do not look).
#[derive(Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn deliver(&self, _: &Notification) -> std::io::Result<()> {
        Ok(())
    }
}
