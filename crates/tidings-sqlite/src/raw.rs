//! The writer's message-path statements, run directly on its connection's SQLite handle.
//!
//! sqlx runs every statement of a connection on that connection's worker thread: each
//! statement is a hand-off (bind arguments copied, a channel send, a thread wake-up) and
//! each returned row another. The writer's group commit runs hundreds of tiny statements per
//! batch (an insert per send, a delete per ack, a claim), so those hand-offs cost as much as
//! SQLite's own work (measured: docs/benchmarks.md, "Where Tidings SQLite's time goes now").
//! [`Direct::lock`] borrows the handle from sqlx (`SqliteConnection::lock_handle`: the
//! worker thread waits until it is given back) and runs the statements with rusqlite on the
//! writer's own thread, each prepared once for the writer's life and executed per row.
//!
//! Only the writer's hot statements live here: the sends' inserts, acks with their inbox
//! rows, requeues, lease extensions, claims, and the topology generation. Write jobs,
//! dead letters and everything outside the writer stay on sqlx (`store.rs`).

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use sqlx::sqlite::{LockedSqliteHandle, SqliteConnection};

use crate::error::Result;
use crate::schema::now_ms;
use crate::store::{ClaimSpec, Claimed, NewRow, CLAIM_ANY, CLAIM_ORDERED, INSERT_ONE};

/// How many leased rows [`Raw::next_visible`] reads at most for the earliest lease end.
const LEASE_SCAN: i64 = 4096;

/// Subscriptions: message type → the queues that get it.
pub(crate) type Subscriptions = HashMap<String, Vec<String>>;

/// The writer's direct connection: rusqlite on the sqlx connection's handle, kept for the
/// writer's life so that its prepared statements serve every batch. Usable only through
/// [`Direct::lock`], i.e. while sqlx lends the handle.
#[derive(Default)]
pub(crate) struct Direct {
    c: Option<Connection>,
}

impl Direct {
    /// Takes the handle of `conn` (inside its open transaction, or not) for direct
    /// statements, until the returned value is dropped.
    pub(crate) async fn lock<'a>(&'a mut self, conn: &'a mut SqliteConnection) -> Result<Raw<'a>> {
        let mut guard = conn.lock_handle().await?;
        if self.c.is_none() {
            let handle = guard.as_raw_handle();
            // SAFETY: the handle stays valid until `conn` closes, and the writer calls
            // `Direct::close` before that. The connection does not own the handle
            // (dropping it finalizes only the statements it prepared, never closes the
            // connection), and it is used only through a `Raw`, which holds sqlx's lock
            // guard: this thread alone touches the handle meanwhile (sqlx's worker thread
            // blocks on the handle's mutex). Both crates use the same `libsqlite3-sys`, so
            // the pointer types are the same C type.
            #[allow(unsafe_code)]
            let c = unsafe { Connection::from_handle(handle.as_ptr()) }?;
            self.c = Some(c);
        }
        let Some(c) = self.c.as_ref() else {
            return Err(crate::error::SqliteError::Closed);
        };
        Ok(Raw { c, _guard: guard })
    }

    /// Finalizes the prepared statements (holding the handle), before `conn` closes.
    pub(crate) async fn close(&mut self, conn: &mut SqliteConnection) {
        if let Some(c) = self.c.take() {
            match conn.lock_handle().await {
                Ok(_guard) => drop(c),
                // The worker thread is gone: the handle is closed or leaked with it, and
                // finalizing now could race nothing, but neither is it needed.
                Err(_) => std::mem::forget(c),
            }
        }
    }
}

/// The writer connection's handle, lent by sqlx, for direct statements.
pub(crate) struct Raw<'a> {
    c: &'a Connection,
    _guard: LockedSqliteHandle<'a>,
}

impl Raw<'_> {
    /// Runs `f` in a `BEGIN IMMEDIATE … COMMIT` of its own; rolls back if `f` or the commit
    /// fails.
    pub(crate) fn transaction<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.c.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let r = f(self).and_then(|v| {
            self.c.prepare_cached("COMMIT")?.execute([])?;
            Ok(v)
        });
        if r.is_err() && !self.c.is_autocommit() {
            // The error being returned says why; a failed rollback leaves nothing to add.
            let _ = self.c.execute_batch("ROLLBACK");
        }
        r
    }

    /// `tidings_schema.topology_gen` (bumped by every declare, in any process).
    pub(crate) fn topology_gen(&self) -> Result<i64> {
        Ok(self
            .c
            .prepare_cached("SELECT topology_gen FROM tidings_schema WHERE id = 1")?
            .query_row([], |r| r.get(0))?)
    }

    /// Every declared queue, and every subscription as (message type → queues).
    pub(crate) fn topology(&self) -> Result<(Vec<String>, Subscriptions)> {
        let queues = self
            .c
            .prepare("SELECT name FROM tidings_queues")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        let mut subs = Subscriptions::new();
        let mut st = self.c.prepare(
            "SELECT message_type, queue FROM tidings_subscriptions ORDER BY message_type, queue",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            subs.entry(r.get(0)?).or_default().push(r.get(1)?);
        }
        Ok((queues, subs))
    }

    /// Inserts rows, in order.
    pub(crate) fn insert_rows(&self, rows: &[NewRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut st = self.c.prepare_cached(INSERT_ONE)?;
        for r in rows {
            st.execute(params![
                r.id,
                r.queue,
                r.message_id,
                r.partition_key,
                r.visible_at,
                r.sent_at,
                r.envelope
            ])?;
        }
        Ok(())
    }

    /// Deletes an acked row (if it is still under lease `token`).
    pub(crate) fn ack(&self, id: i64, token: i64) -> Result<()> {
        self.c
            .prepare_cached("DELETE FROM tidings_messages WHERE id = ?1 AND lease_token = ?2")?
            .execute(params![id, token])?;
        Ok(())
    }

    /// Records a handled message in the inbox (an already recorded one stays as it is).
    pub(crate) fn record_inbox(&self, endpoint: &str, message_id: &uuid::Uuid) -> Result<()> {
        let mut buf = uuid::Uuid::encode_buffer();
        let id: &str = message_id.hyphenated().encode_lower(&mut buf);
        self.c
            .prepare_cached(crate::inbox::RECORD)?
            .execute(params![endpoint, id, now_ms()])?;
        Ok(())
    }

    /// Makes a leased row visible again at `visible_at`, optionally with a new envelope;
    /// `uncount` takes back the delivery (release).
    pub(crate) fn requeue(
        &self,
        id: i64,
        token: i64,
        visible_at: i64,
        envelope: Option<&[u8]>,
        uncount: bool,
    ) -> Result<()> {
        self.c
            .prepare_cached(
                "UPDATE tidings_messages SET visible_at = ?1, lease_token = NULL, \
                 lease_until = NULL, envelope = COALESCE(?2, envelope), \
                 delivery_count = CASE WHEN ?3 THEN MAX(delivery_count - 1, 0) \
                 ELSE delivery_count END \
                 WHERE id = ?4 AND lease_token = ?5",
            )?
            .execute(params![visible_at, envelope, uncount, id, token])?;
        Ok(())
    }

    /// Keeps a leased row invisible until `until`.
    pub(crate) fn extend(&self, id: i64, token: i64, until: i64) -> Result<()> {
        self.c
            .prepare_cached(
                "UPDATE tidings_messages SET lease_until = ?1 WHERE id = ?2 AND lease_token = ?3",
            )?
            .execute(params![until, id, token])?;
        Ok(())
    }

    /// Claims up to `spec.max` visible rows under lease `token`, oldest first.
    pub(crate) fn claim(&self, spec: &ClaimSpec, token: i64) -> Result<Vec<Claimed>> {
        let now = now_ms();
        let sql = if spec.ordered {
            CLAIM_ORDERED
        } else {
            CLAIM_ANY
        };
        let mut st = self.c.prepare_cached(sql)?;
        let mut rows = st.query(params![
            token,
            now + spec.lease_ms,
            spec.queue,
            now,
            spec.max as i64
        ])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(Claimed {
                id: r.get(0)?,
                delivery_count: r.get(1)?,
                envelope: r.get(2)?,
            });
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// When the next row of `queue` becomes claimable (its delay or its lease ends), if
    /// any: a hint for a receiver that found nothing, so it looks again then.
    ///
    /// Delays are found through the ready index. Leases are read from the rows whose delay
    /// has passed, i.e. the in-flight ones (a claim just found nothing else) or, on an
    /// ordered queue, rows waiting behind their key; at most [`LEASE_SCAN`] of them are
    /// read, so a long line behind one key costs a bounded scan and, at worst, a later
    /// hint (the receiver's own wait still bounds it).
    pub(crate) fn next_visible(&self, queue: &str) -> Result<Option<i64>> {
        let now = now_ms();
        let delay: Option<i64> = self
            .c
            .prepare_cached(
                "SELECT MIN(visible_at) FROM tidings_messages WHERE queue = ?1 AND visible_at > ?2",
            )?
            .query_row(params![queue, now], |r| r.get(0))
            .optional()?
            .flatten();
        let lease: Option<i64> = self
            .c
            .prepare_cached(
                "SELECT MIN(lease_until) FROM (SELECT lease_until FROM tidings_messages \
                 WHERE queue = ?1 AND visible_at <= ?2 AND lease_until > ?2 LIMIT ?3)",
            )?
            .query_row(params![queue, now, LEASE_SCAN], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(match (delay, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}
