//! The outbox relay (transports other than SQLite — there the business transaction
//! enqueues the messages itself): ships rows committed to the `outbox` table to the
//! transport, in commit order, then deletes them. At-least-once: a crash between send and delete sends a
//! row again, which the consumers' inboxes absorb.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tidings_core::transport::{Outgoing, Transport};
use tidings_core::Envelope;
use tokio_util::sync::CancellationToken;

use crate::db::Db;

const BATCH: i64 = 512;

/// Runs until `stop` is cancelled and the outbox is empty (or `stop` fires twice as long).
pub async fn run(db: Db, transport: Arc<dyn Transport>, stop: CancellationToken) {
    loop {
        match ship_batch(&db, &transport).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {
                if stop.is_cancelled() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay: shipping failed; retrying");
                if stop.is_cancelled() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        tokio::select! {
            _ = db.outbox_ready.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.cancelled() => {}
        }
    }
}

/// Ships one batch; returns how many rows.
pub async fn ship_batch(db: &Db, transport: &Arc<dyn Transport>) -> anyhow::Result<usize> {
    let rows = sqlx::query("SELECT seq, destination, envelope FROM outbox ORDER BY seq LIMIT ?")
        .bind(BATCH)
        .fetch_all(&db.read)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut last = 0i64;
    for row in &rows {
        last = row.try_get("seq")?;
        let dest: Option<String> = row.try_get("destination")?;
        let bytes: Vec<u8> = row.try_get("envelope")?;
        let env = Envelope::from_json(&bytes)?;
        out.push(match dest {
            Some(q) => Outgoing::to_queue(q, env),
            None => Outgoing::publish(env),
        });
    }
    transport.send(out).await?;
    db.write(move |conn| {
        Box::pin(async move {
            sqlx::query("DELETE FROM outbox WHERE seq <= ?")
                .bind(last)
                .execute(conn)
                .await?;
            Ok::<_, anyhow::Error>(())
        })
    })
    .await?;
    Ok(rows.len())
}
