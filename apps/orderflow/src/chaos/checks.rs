//! After the kills: wait for quiescence, then the invariants beyond the load run's
//! ([`crate::report::check_invariants`]) that a crash-cycle run must also prove.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tidings_core::transport::{QueueStats, Transport};
use uuid::Uuid;

use crate::args;
use crate::db::Db;
use crate::report::{self, Check, Scope};
use crate::services::saga;

/// Where the run stands when it stops waiting.
#[derive(Debug)]
pub struct Settled {
    /// Whether every order in scope was final and no queue held work.
    pub quiet: bool,
    /// The queues at that moment.
    pub stats: Vec<QueueStats>,
    /// Orders in scope, and how many are final.
    pub progress: (i64, i64),
    /// How long it took.
    pub waited: Duration,
}

/// Work left in the queues: ready or in-flight messages anywhere, and scheduled ones
/// outside the saga's queue (where they are pending payment timeouts).
fn work_left(stats: &[QueueStats]) -> Vec<String> {
    stats
        .iter()
        .filter(|s| !s.queue.contains(".replies."))
        .filter_map(|s| {
            let (in_flight, scheduled) = (s.in_flight.unwrap_or(0), s.scheduled.unwrap_or(0));
            let scheduled = if s.queue == saga::QUEUE { 0 } else { scheduled };
            (s.ready + in_flight + scheduled > 0).then(|| {
                format!(
                    "{}: {} ready, {in_flight} in flight, {scheduled} scheduled",
                    s.queue, s.ready
                )
            })
        })
        .collect()
}

/// Waits (the service still running) until every order in scope is final, the relay's
/// outbox is empty and no queue holds work but pending timeouts — twice in a row, a
/// second apart — or `patience` passes.
pub async fn wait_quiet(
    db: &Db,
    transport: &dyn Transport,
    scope: Scope,
    patience: Duration,
) -> anyhow::Result<Settled> {
    let started = Instant::now();
    let mut calm = 0;
    loop {
        let progress = report::progress(db, scope).await?;
        let outbox = db.relay_pending().await?;
        let stats = transport.stats().await?;
        let quiet = progress.0 == progress.1 && outbox == 0 && work_left(&stats).is_empty();
        calm = if quiet { calm + 1 } else { 0 };
        if calm >= 2 || started.elapsed() > patience {
            return Ok(Settled {
                quiet: calm >= 2,
                stats,
                progress,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The crash-cycle invariants beyond the load run's.
pub async fn chaos_checks(
    db: &Db,
    transport: &dyn Transport,
    scope: Scope,
    accepted: &[Uuid],
    settled: &Settled,
) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();

    let stored: HashSet<String> = db
        .read
        .all::<(String,)>(
            "SELECT order_id FROM api_orders WHERE placed_at >= ?1",
            args![scope.since_micros],
        )
        .await?
        .into_iter()
        .map(|(id,)| id)
        .collect();
    let missing = accepted
        .iter()
        .filter(|id| !stored.contains(&id.to_string()))
        .count();
    let distinct: HashSet<&Uuid> = accepted.iter().collect();
    checks.push(Check {
        name: "every order answered 202 exists",
        ok: missing == 0 && !accepted.is_empty(),
        detail: format!(
            "{} answered ({} distinct), {missing} missing; {} orders stored",
            accepted.len(),
            distinct.len(),
            stored.len()
        ),
    });

    // Net charge (the bank's ledger) per order against its outcome (the read model).
    type Net = (String, i64, Option<String>, i64, i64);
    let rows: Vec<Net> = db
        .read
        .all(
            "SELECT o.order_id, o.total_cents, v.status, \
             CAST(COALESCE((SELECT SUM(amount_cents) FROM gw_ledger g WHERE g.intent = o.order_id AND g.kind = 'charge'), 0) AS BIGINT), \
             CAST(COALESCE((SELECT SUM(amount_cents) FROM gw_ledger g WHERE g.intent = o.order_id AND g.kind = 'refund'), 0) AS BIGINT) \
             FROM api_orders o LEFT JOIN view_orders v ON v.order_id = o.order_id WHERE o.placed_at >= ?1",
            args![scope.since_micros],
        )
        .await?;
    let mut wrong = Vec::new();
    for (id, total, status, charged, refunded) in &rows {
        let (total, charged, refunded) = (*total, *charged, *refunded);
        let expected = if status.as_deref() == Some("Completed") {
            total
        } else {
            0
        };
        if charged - refunded != expected {
            wrong.push(format!(
                "{id} ({}): charged {charged} - refunded {refunded}, expected {expected}",
                status.as_deref().unwrap_or("no status")
            ));
        }
    }
    checks.push(Check {
        name: "each order's net charge is its total if completed, else 0",
        ok: wrong.is_empty(),
        detail: if wrong.is_empty() {
            format!("{} orders balance", rows.len())
        } else {
            format!("{} wrong: {}", wrong.len(), first(&wrong))
        },
    });

    let dead = report::error_queue(transport, None).await?;
    let n: u64 = dead.values().sum();
    checks.push(Check {
        name: "nothing dead-lettered",
        ok: n == 0,
        detail: if n == 0 {
            "error queues empty".into()
        } else {
            dead.iter()
                .map(|((q, r), n)| format!("{q}: {n} × {r}"))
                .collect::<Vec<_>>()
                .join("; ")
        },
    });

    let left = work_left(&settled.stats);
    let timeouts: u64 = settled
        .stats
        .iter()
        .filter(|s| s.queue == saga::QUEUE)
        .map(|s| s.scheduled.unwrap_or(0))
        .sum();
    checks.push(Check {
        name: "no message left in a queue except pending timeouts",
        ok: settled.quiet && left.is_empty(),
        detail: if left.is_empty() && settled.quiet {
            format!("{timeouts} pending timeouts in `{}`", saga::QUEUE)
        } else {
            format!(
                "not quiet after {:?} ({} of {} orders final): {}",
                settled.waited,
                settled.progress.1,
                settled.progress.0,
                left.join("; ")
            )
        },
    });
    Ok(checks)
}

fn first(v: &[String]) -> String {
    let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    if v.len() > 5 {
        s.push_str("; …");
    }
    s
}
