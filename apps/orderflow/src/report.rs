//! What a run proves: outcomes, error-queue contents, latency per stage, and the invariant
//! checks ([`check_invariants`]) shared by the binary and the end-to-end test.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use hdrhistogram::Histogram;
use tidings_core::envelope::headers;
use tidings_core::transport::{DeadLetterQuery, Transport};

use crate::args;
use crate::db::Db;

/// Which orders a report covers: those placed at or after `since` (µs since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// Lower bound of `placed_at`, in microseconds since the epoch.
    pub since_micros: i64,
}

/// One invariant and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    /// What must hold.
    pub name: &'static str,
    /// Whether it did.
    pub ok: bool,
    /// Numbers behind the verdict.
    pub detail: String,
}

fn check(name: &'static str, ok: bool, detail: String) -> Check {
    Check { name, ok, detail }
}

async fn scalar(db: &Db, sql: &'static str, scope: Scope) -> anyhow::Result<i64> {
    let (v,): (Option<i64>,) = db.read.one(sql, args![scope.since_micros]).await?;
    Ok(v.unwrap_or(0))
}

macro_rules! scoped {
    ($($part:literal),*) => { concat!($($part),*) };
}

/// Counts orders in scope and how many are final.
pub async fn progress(db: &Db, scope: Scope) -> anyhow::Result<(i64, i64)> {
    let total = scalar(
        db,
        "SELECT COUNT(*) FROM api_orders WHERE placed_at >= ?1",
        scope,
    )
    .await?;
    let done = scalar(
        db,
        "SELECT COUNT(*) FROM api_orders o JOIN view_orders v ON v.order_id = o.order_id \
         WHERE o.placed_at >= ?1 AND v.rank = 9",
        scope,
    )
    .await?;
    Ok((total, done))
}

/// Checks every invariant of the orders in `scope`. Returns one [`Check`] per invariant.
pub async fn check_invariants(
    db: &Db,
    notifications: &Path,
    scope: Scope,
) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let (total, done) = progress(db, scope).await?;
    checks.push(check(
        "every order is Completed or Cancelled",
        total == done,
        format!("{done} of {total} final"),
    ));

    // stock: initial - held == available, never negative (global, all runs)
    let rows: Vec<(String, i64, i64, i64)> = db
        .read
        .all(
            "SELECT s.product_id, s.initial, s.available, \
             CAST((SELECT COALESCE(SUM(quantity), 0) FROM inv_reservations r WHERE r.product_id = s.product_id AND r.released = 0) AS BIGINT) AS held \
             FROM inv_stock s",
            args![],
        )
        .await?;
    let mut bad = Vec::new();
    for (p, init, avail, held) in &rows {
        if *avail < 0 || init - held != *avail {
            bad.push(format!(
                "{p}: initial {init} - held {held} != available {avail}"
            ));
        }
    }
    checks.push(check(
        "stock is conserved and never negative",
        bad.is_empty(),
        if bad.is_empty() {
            format!("{} products balance", rows.len())
        } else {
            bad.join("; ")
        },
    ));

    let held_by_cancelled = scalar(db, scoped!(
        "SELECT COUNT(DISTINCT r.order_id) FROM inv_reservations r JOIN view_orders v ON v.order_id = r.order_id \
         WHERE r.released = 0 AND v.status = 'Cancelled' AND r.order_id IN ", "(SELECT order_id FROM api_orders WHERE placed_at >= ?1)"), scope).await?;
    let completed_unreserved = scalar(db, scoped!(
        "SELECT COUNT(*) FROM view_orders v WHERE v.status = 'Completed' AND v.order_id IN ", "(SELECT order_id FROM api_orders WHERE placed_at >= ?1)",
        " AND NOT EXISTS (SELECT 1 FROM inv_reservations r WHERE r.order_id = v.order_id AND r.released = 0)"), scope).await?;
    checks.push(check(
        "cancelled orders hold no stock; completed orders hold theirs",
        held_by_cancelled == 0 && completed_unreserved == 0,
        format!("{held_by_cancelled} cancelled orders still hold stock, {completed_unreserved} completed orders hold none"),
    ));

    let wrong_amount = scalar(
        db,
        scoped!(
            "SELECT COUNT(*) FROM gw_ledger g JOIN api_orders o ON o.order_id = g.intent \
         WHERE g.kind = 'charge' AND g.amount_cents != o.total_cents AND o.placed_at >= ?1"
        ),
        scope,
    )
    .await?;
    let charges = scalar(db, "SELECT COUNT(*) FROM gw_ledger g JOIN api_orders o ON o.order_id = g.intent WHERE g.kind = 'charge' AND o.placed_at >= ?1", scope).await?;
    let charged_orders = scalar(db, "SELECT COUNT(DISTINCT g.intent) FROM gw_ledger g JOIN api_orders o ON o.order_id = g.intent WHERE g.kind = 'charge' AND o.placed_at >= ?1", scope).await?;
    checks.push(check(
        "each order charged at most once, for its total",
        charges == charged_orders && wrong_amount == 0,
        format!(
            "{charges} charges for {charged_orders} orders, {wrong_amount} with a wrong amount"
        ),
    ));

    let charged = scalar(db, "SELECT CAST(SUM(g.amount_cents) AS BIGINT) FROM gw_ledger g JOIN api_orders o ON o.order_id = g.intent WHERE g.kind = 'charge' AND o.placed_at >= ?1", scope).await?;
    let refunded = scalar(db, "SELECT CAST(SUM(g.amount_cents) AS BIGINT) FROM gw_ledger g JOIN api_orders o ON o.order_id = g.intent WHERE g.kind = 'refund' AND o.placed_at >= ?1", scope).await?;
    let completed_money = scalar(db, "SELECT CAST(SUM(o.total_cents) AS BIGINT) FROM api_orders o JOIN view_orders v ON v.order_id = o.order_id WHERE v.status = 'Completed' AND o.placed_at >= ?1", scope).await?;
    checks.push(check(
        "money charged - refunded == value of completed orders",
        charged - refunded == completed_money,
        format!(
            "charged {} - refunded {} = {} ; completed orders {}",
            cents(charged),
            cents(refunded),
            cents(charged - refunded),
            cents(completed_money)
        ),
    ));

    let cancelled_unrefunded = scalar(db, scoped!(
        "SELECT COUNT(*) FROM view_orders v WHERE v.status = 'Cancelled' AND v.order_id IN ", "(SELECT order_id FROM api_orders WHERE placed_at >= ?1)",
        " AND EXISTS (SELECT 1 FROM gw_ledger g WHERE g.intent = v.order_id AND g.kind = 'charge')",
        " AND NOT EXISTS (SELECT 1 FROM gw_ledger g WHERE g.intent = v.order_id AND g.kind = 'refund')"), scope).await?;
    let cancelled_after_capture = scalar(db, scoped!(
        "SELECT COUNT(*) FROM view_orders v WHERE v.status = 'Cancelled' AND v.order_id IN ", "(SELECT order_id FROM api_orders WHERE placed_at >= ?1)",
        " AND EXISTS (SELECT 1 FROM gw_ledger g WHERE g.intent = v.order_id AND g.kind = 'charge')"), scope).await?;
    let completed_refunded = scalar(db, scoped!(
        "SELECT COUNT(*) FROM view_orders v WHERE v.status = 'Completed' AND v.order_id IN ", "(SELECT order_id FROM api_orders WHERE placed_at >= ?1)",
        " AND EXISTS (SELECT 1 FROM gw_ledger g WHERE g.intent = v.order_id AND g.kind = 'refund')"), scope).await?;
    checks.push(check(
        "orders cancelled after capture are refunded; completed ones are not",
        cancelled_unrefunded == 0 && completed_refunded == 0,
        format!("{cancelled_after_capture} cancelled after capture, {cancelled_unrefunded} of them unrefunded; {completed_refunded} completed orders refunded"),
    ));

    let ids: Vec<String> = db
        .read
        .all::<(String,)>(
            "SELECT order_id FROM api_orders WHERE placed_at >= ?1",
            args![scope.since_micros],
        )
        .await?
        .into_iter()
        .map(|(id,)| id)
        .collect();
    // Distinct notification ids per order (the sink is idempotent by id; a repeated line
    // of one id is one notification).
    let mut lines: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(notifications) {
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(order) = v.get("order_id").and_then(|v| v.as_str()) {
                    let id = v.get("id").and_then(|v| v.as_str()).unwrap_or(line);
                    lines
                        .entry(order.to_string())
                        .or_default()
                        .insert(id.to_string());
                }
            }
        }
    }
    let none = ids.iter().filter(|id| !lines.contains_key(*id)).count();
    let several = ids
        .iter()
        .filter(|id| lines.get(*id).is_some_and(|n| n.len() > 1))
        .count();
    checks.push(check(
        "exactly one notification per order",
        none == 0 && several == 0,
        format!(
            "{} orders: {none} without, {several} with more than one",
            ids.len()
        ),
    ));

    let disagree = scalar(db, scoped!(
        "SELECT COUNT(*) FROM saga_orders s JOIN view_orders v ON v.order_id = s.order_id WHERE s.order_id IN ", "(SELECT order_id FROM api_orders WHERE placed_at >= ?1)",
        " AND ((s.state = 'completed') != (v.status = 'Completed') OR (s.state = 'cancelled') != (v.status = 'Cancelled'))"), scope).await?;
    checks.push(check(
        "read model agrees with the saga",
        disagree == 0,
        format!("{disagree} orders disagree"),
    ));
    Ok(checks)
}

fn cents(c: i64) -> String {
    format!("${}.{:02}", c / 100, (c % 100).abs())
}

/// Completed count and cancellations by reason (the part before `:`).
pub async fn outcomes(db: &Db, scope: Scope) -> anyhow::Result<(i64, BTreeMap<String, i64>)> {
    let rows: Vec<(String, Option<String>)> = db
        .read
        .all(
            "SELECT v.status, v.reason FROM api_orders o JOIN view_orders v ON v.order_id = o.order_id \
             WHERE o.placed_at >= ?1 AND v.rank = 9",
            args![scope.since_micros],
        )
        .await?;
    let mut completed = 0;
    let mut cancelled = BTreeMap::new();
    for (status, reason) in rows {
        if status == "Completed" {
            completed += 1;
        } else {
            let reason = reason.unwrap_or_default();
            let key = reason.split(':').next().unwrap_or("").to_string();
            *cancelled.entry(key).or_insert(0) += 1;
        }
    }
    Ok((completed, cancelled))
}

/// Distinct dead-lettered messages by (queue, reason).
pub async fn error_queue(
    transport: &dyn Transport,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<BTreeMap<(String, String), u64>> {
    // Distinct messages: a duplicated delivery of a poison message dead-letters twice.
    let mut ids = std::collections::BTreeSet::new();
    let mut by = BTreeMap::new();
    let query = DeadLetterQuery {
        since,
        ..DeadLetterQuery::default()
    };
    for dl in transport.dead_letters(&query).await? {
        if !ids.insert((dl.queue.clone(), dl.envelope.id)) {
            continue;
        }
        let reason = dl
            .envelope
            .header(headers::FAULT_REASON)
            .unwrap_or("?")
            .to_string();
        *by.entry((dl.queue, reason)).or_insert(0) += 1;
    }
    Ok(by)
}

/// Latency of one stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Stage name.
    pub name: &'static str,
    /// Samples.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// Percentiles of a histogram of microseconds.
pub fn stage(name: &'static str, h: &Histogram<u64>) -> Stage {
    Stage {
        name,
        count: h.len(),
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

/// Per-stage latency from the read model's timestamps (event send times).
pub async fn stages(db: &Db, scope: Scope) -> anyhow::Result<Vec<Stage>> {
    type Times = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        String,
    );
    let rows: Vec<Times> = db
        .read
        .all(
            "SELECT v.placed_at, v.reserved_at, v.paid_at, v.shipped_at, v.final_at, v.status \
             FROM api_orders o JOIN view_orders v ON v.order_id = o.order_id WHERE o.placed_at >= ?1",
            args![scope.since_micros],
        )
        .await?;
    let names = [
        "placed -> stock reserved",
        "reserved -> paid",
        "paid -> shipped",
        "shipped -> completed",
        "placed -> completed (end to end)",
        "placed -> cancelled",
    ];
    let mut hs: Vec<Histogram<u64>> = (0..names.len())
        .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 3))
        .collect::<Result<_, _>>()?;
    for (a, b, c, d, e, status) in rows {
        let t = [a, b, c, d, e];
        let mut rec = |i: usize, a: Option<i64>, b: Option<i64>| {
            if let (Some(a), Some(b)) = (a, b) {
                let _ = hs[i].record((b - a).max(1) as u64);
            }
        };
        if status == "Completed" {
            rec(0, t[0], t[1]);
            rec(1, t[1], t[2]);
            rec(2, t[2], t[3]);
            rec(3, t[3], t[4]);
            rec(4, t[0], t[4]);
        } else if status == "Cancelled" {
            rec(5, t[0], t[4]);
        }
    }
    Ok(names.iter().zip(&hs).map(|(n, h)| stage(n, h)).collect())
}
