//! One group commit: the statements of a batch of writer operations, in one transaction.
//!
//! A batch of sends, acks (with their inbox rows), requeues, lease extensions and claims —
//! the message path — runs entirely on the connection's handle ([`Raw`]): `BEGIN
//! IMMEDIATE`, the statements and `COMMIT` on the writer's thread, no hand-off to sqlx's
//! worker thread. A batch with dead letters or callers' jobs (which take a
//! `SqliteConnection`) opens its transaction through sqlx and runs those between two raw
//! stretches, so jobs see the batch's sends and acks, and the claims see the jobs' sends.

use sqlx::sqlite::SqliteConnection;
use sqlx::Connection;

use crate::error::Result;
use crate::job::{run_jobs, Job};
use crate::park::{Found, ParkedClaims};
use crate::raw::{Direct, Raw};
use crate::store;
use crate::topology::{Topo, TopologyCache};
use crate::writer::{ClaimResult, Op, Outcome};

/// Runs a batch in one transaction. Per-operation failures that touch nothing (an unknown
/// queue) are answered on their own; a database failure fails the batch.
pub(crate) async fn exec(
    conn: &mut SqliteConnection,
    direct: &mut Direct,
    cache: &mut TopologyCache,
    ops: &[Op],
    parked: Option<&ParkedClaims>,
) -> Result<(Vec<Outcome>, Found)> {
    let mut outcomes: Vec<Option<Outcome>> = ops.iter().map(|_| None).collect();
    let found = if ops
        .iter()
        .any(|o| matches!(o, Op::Job(_) | Op::DeadLetter { .. }))
    {
        with_jobs(conn, direct, cache, ops, parked, &mut outcomes).await?
    } else {
        let raw = direct.lock(conn).await?;
        raw.transaction(|raw| {
            let topo = topology(raw, cache, ops)?;
            settle(raw, topo.as_deref(), ops, &mut outcomes)?;
            claim(raw, ops, parked, &mut outcomes)
        })?
    };
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Unit(Ok(()))))
        .collect();
    Ok((outcomes, found))
}

/// A batch with dead letters or jobs: the transaction is sqlx's (jobs may open savepoints
/// through it), the message path raw around them.
async fn with_jobs(
    conn: &mut SqliteConnection,
    direct: &mut Direct,
    cache: &mut TopologyCache,
    ops: &[Op],
    parked: Option<&ParkedClaims>,
    outcomes: &mut [Option<Outcome>],
) -> Result<Found> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let topo = {
        let raw = direct.lock(&mut tx).await?;
        let topo = topology(&raw, cache, ops)?;
        settle(&raw, topo.as_deref(), ops, outcomes)?;
        topo
    };
    for (i, op) in ops.iter().enumerate() {
        if let Op::DeadLetter { row, .. } = op {
            store::dead_letter(&mut tx, row).await?;
            outcomes[i] = Some(Outcome::Unit(Ok(())));
        }
    }
    // Callers' jobs, in order, each in its own savepoint; before the claims, so that
    // messages they enqueue can be claimed in this very batch.
    let rows = match topo {
        Some(topo) => {
            let jobs: Vec<&Job> = ops
                .iter()
                .filter_map(|op| match op {
                    Op::Job(job) => Some(job),
                    _ => None,
                })
                .collect();
            run_jobs(&mut tx, &jobs, topo).await?
        }
        None => Vec::new(),
    };
    let found = {
        let raw = direct.lock(&mut tx).await?;
        raw.insert_rows(&rows)?;
        claim(&raw, ops, parked, outcomes)?
    };
    tx.commit().await?;
    Ok(found)
}

/// The topology, when the batch sends (resolving destinations) or runs jobs.
fn topology(
    raw: &Raw<'_>,
    cache: &mut TopologyCache,
    ops: &[Op],
) -> Result<Option<std::sync::Arc<Topo>>> {
    if ops
        .iter()
        .any(|o| matches!(o, Op::Send { .. } | Op::Job(_)))
    {
        Ok(Some(cache.refresh(raw)?))
    } else {
        Ok(None)
    }
}

/// The batch's sends, acks (with their inbox rows), requeues and lease extensions.
fn settle(
    raw: &Raw<'_>,
    topo: Option<&Topo>,
    ops: &[Op],
    outcomes: &mut [Option<Outcome>],
) -> Result<()> {
    if let Some(topo) = topo {
        let mut rows = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Send { msgs, .. } = op {
                outcomes[i] = Some(Outcome::Unit(
                    topo.resolve(msgs).map(|mut r| rows.append(&mut r)),
                ));
            }
        }
        raw.insert_rows(&rows)?;
    }
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Ack {
                id, token, inbox, ..
            } => {
                raw.ack(*id, *token)?;
                if let Some((endpoint, message_id)) = inbox {
                    raw.record_inbox(endpoint, message_id)?;
                }
            }
            Op::Requeue {
                id,
                token,
                visible_at,
                envelope,
                uncount,
                ..
            } => raw.requeue(*id, *token, *visible_at, envelope.as_deref(), *uncount)?,
            Op::Extend {
                id, token, until, ..
            } => raw.extend(*id, *token, *until)?,
            _ => continue,
        }
        outcomes[i] = Some(Outcome::Unit(Ok(())));
    }
    Ok(())
}

/// The batch's claims, then the parked receivers' (they see everything the batch
/// enqueued or freed); jobs are marked done.
fn claim(
    raw: &Raw<'_>,
    ops: &[Op],
    parked: Option<&ParkedClaims>,
    outcomes: &mut [Option<Outcome>],
) -> Result<Found> {
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Job(_) => outcomes[i] = Some(Outcome::Unit(Ok(()))),
            Op::Claim { spec, .. } => {
                let token = store::new_token();
                let rows = raw.claim(spec, token)?;
                let next_visible = if rows.is_empty() {
                    raw.next_visible(&spec.queue)?
                } else {
                    None
                };
                outcomes[i] = Some(Outcome::Claim(Ok(ClaimResult {
                    rows,
                    token,
                    next_visible,
                    waited: false,
                })));
            }
            _ => {}
        }
    }
    match parked {
        Some(p) => p.claim_in(raw),
        None => Ok(Vec::new()),
    }
}
