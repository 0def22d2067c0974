//! Notifications: tells the customer how their order ended, on their channel (e-mail, SMS,
//! push) through a [`Sink`]. Exactly one notification per order, under kills too:
//!
//! - the notification carries an id (the id of the message that causes it, the same on
//!   every redelivery), and the sink is idempotent by that id, as real providers are by an
//!   idempotency key ([`FileSink`] remembers the ids it wrote);
//! - the sink is called *before* the commit that records it (`notif_sent`, with the inbox
//!   row): a kill in between redelivers the message, which calls the sink again with the
//!   same id (dropped there) and then commits. Calling it after the commit instead would
//!   lose the notification to a kill in between.
//! - `notif_sent` (unique per order) keeps a second outcome message from notifying again.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tidings_core::{ConsumeContext, Endpoint, HandlerError};
use tracing::Instrument;
use uuid::Uuid;

use crate::args;
use crate::contracts::{Channel, OrderCancelled, OrderCompleted};
use crate::db::{Db, Work};

/// The endpoint's queue name.
pub const QUEUE: &str = "notifications";

/// One message to a customer.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// The notification's id: the same for every delivery of the message that causes it.
    pub id: Uuid,
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
    /// Delivers one notification — idempotently by [`Notification::id`]: a second call with
    /// the same id delivers nothing more (the handler calls it again after a crash).
    fn deliver(&self, n: &Notification) -> std::io::Result<()>;
}

/// Appends one JSON line per notification to a file, once per notification id: it reads
/// the ids already in the file when it opens, and drops a repeat (a provider's
/// idempotency key; it keeps every id in memory, 16 bytes each).
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    state: Mutex<(std::fs::File, HashSet<Uuid>)>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: Uuid,
}

impl FileSink {
    /// Opens (appending) `path`, learning the ids it holds. A last line cut short by a kill
    /// is ended, so the next line starts clean (the cut one has no id, and is written again
    /// by the redelivery).
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_string(&mut text)?;
        let ids = text
            .lines()
            .filter_map(|l| serde_json::from_str::<IdOnly>(l).ok())
            .map(|n| n.id)
            .collect();
        if !text.is_empty() && !text.ends_with('\n') {
            file.write_all(b"\n")?;
        }
        Ok(FileSink {
            path,
            state: Mutex::new((file, ids)),
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
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (file, ids) = &mut *state;
        if ids.contains(&n.id) {
            return Ok(());
        }
        // One write of the whole line (O_APPEND): a kill leaves all of it or a cut tail.
        file.write_all(&line)?;
        ids.insert(n.id);
        Ok(())
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
                id: ctx.message_id(),
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
                id: ctx.message_id(),
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
    let notified: Option<(String,)> = db
        .read
        .opt(
            "SELECT kind FROM notif_sent WHERE order_id = ?",
            args![&order_id],
        )
        .await?;
    if notified.is_none() {
        // Before the commit: a kill after it redelivers, and the sink drops the repeat.
        sink.deliver(&n)
            .map_err(|e| HandlerError::transient(format!("notification sink: {e}")))?;
    }
    db.work(ctx, move |work: &mut Work<'_>| {
        Box::pin(async move {
            work.exec(
                "INSERT INTO notif_sent (order_id, kind, channel) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
                args![order_id, kind, channel],
            )
            .await?;
            Ok(())
        })
    })
    .await?;
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
