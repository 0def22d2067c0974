//! `Idempotency-Key`: the same key with the same order returns the first order (202,
//! `Idempotent-Replayed: true`); the same key with a *different* order is refused (422);
//! a key is remembered for a window ([`DEFAULT_WINDOW`], `--idempotency-window-hours`)
//! and then forgotten: expired keys are ignored on read and swept on write.
//!
//! Keys live in the business database (`api_idempotency_keys`) beside the order, written
//! in the order's transaction, with the order's [fingerprint](super::PlaceOrder::fingerprint).

use std::time::Duration;

use axum::http::HeaderMap;

use super::problem::Problem;
use crate::args;
use crate::sql::{Reader, Tx};

/// The idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Longest accepted key.
pub const MAX_KEY_LEN: usize = 128;
/// How long a key is remembered unless configured otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Expired keys one write sweeps at most (keeps each write's cost bounded; a steady
/// stream of writes sweeps faster than keys expire).
const SWEEP_BATCH: i64 = 64;

/// The request's key: `None` without the header; a 400 when it is not 1–128 visible ASCII
/// characters (`!`..`~`).
pub fn key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let bytes = v.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(Problem::invalid(
            format!("Idempotency-Key must be 1–{MAX_KEY_LEN} visible ASCII characters"),
            vec![],
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// What a live key says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Unused, or expired.
    New,
    /// Used for this same order: (order id, total).
    Same(String, i64),
    /// Used for a different order.
    Different,
}

/// Microseconds since the epoch before which a key has expired.
pub fn horizon(now_micros: i64, window: Duration) -> i64 {
    let w = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    now_micros.saturating_sub(w)
}

const SEEN: &str = "SELECT o.order_id, o.total_cents, k.request_hash FROM api_idempotency_keys k \
     JOIN api_orders o ON o.order_id = k.order_id WHERE k.key = ? AND k.created_at >= ?";

type SeenRow = (String, i64, Option<Vec<u8>>);

fn judge(row: Option<SeenRow>, fingerprint: &[u8; 32]) -> Seen {
    match row {
        None => Seen::New,
        Some((id, total, hash)) => match hash {
            Some(h) if h.as_slice() != fingerprint.as_slice() => Seen::Different,
            _ => Seen::Same(id, total),
        },
    }
}

/// Looks `key` up; keys created before `horizon` are expired. A key stored before
/// fingerprints existed (no hash) matches any order.
pub async fn seen(
    read: &Reader,
    key: &str,
    fingerprint: &[u8; 32],
    horizon: i64,
) -> Result<Seen, sqlx::Error> {
    let row = read.opt(SEEN, args![key, horizon]).await?;
    Ok(judge(row, fingerprint))
}

/// [`seen`] inside the order's transaction, holding the key's lock until it ends (two
/// racing retries with one key in two API processes: the second waits, then sees the
/// first's order).
pub async fn seen_in(
    tx: &mut Tx<'_>,
    key: &str,
    fingerprint: &[u8; 32],
    horizon: i64,
) -> Result<Seen, sqlx::Error> {
    tx.lock(&format!("idempotency:{key}")).await?;
    let row = tx.opt(SEEN, args![key, horizon]).await?;
    Ok(judge(row, fingerprint))
}

/// Stores `key` for `order_id` (replacing an expired use of it) and sweeps a batch of
/// expired keys; run inside the order's transaction.
pub async fn remember(
    tx: &mut Tx<'_>,
    key: &str,
    order_id: &str,
    fingerprint: &[u8; 32],
    now_micros: i64,
    horizon: i64,
) -> Result<(), sqlx::Error> {
    tx.exec(
        "DELETE FROM api_idempotency_keys WHERE key IN \
         (SELECT key FROM api_idempotency_keys WHERE created_at < ? LIMIT ?)",
        args![horizon, SWEEP_BATCH],
    )
    .await?;
    tx.exec(
        "INSERT INTO api_idempotency_keys (key, order_id, request_hash, created_at) \
         VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET order_id = excluded.order_id, \
         request_hash = excluded.request_hash, created_at = excluded.created_at",
        args![key, order_id, fingerprint.as_slice(), now_micros],
    )
    .await?;
    Ok(())
}
