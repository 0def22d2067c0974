//! Vacuuming and analyzing the queue tables when the server's autovacuum is off.
//!
//! Claims walk `messages` in `seq` order and stop at their `LIMIT`; that needs dead index
//! entries to be cleaned up and the planner to know how big a queue is. Without either
//! (autovacuum off: no vacuum, no analyze) an ordered claim degrades to a bitmap scan and
//! sort over the whole queue — measured on OrderFlow: 56 orders/s and thousands of payment
//! timeouts, against 233 orders/s with the tables vacuumed every few seconds. So when
//! `autovacuum` is off, each transport checks the tables' counters every
//! `maintenance_interval` and runs `VACUUM (ANALYZE)` / `ANALYZE` itself past thresholds
//! like the tables' own autovacuum settings. `SKIP_LOCKED`: a process that finds another
//! one's vacuum running skips its turn.

use std::time::Duration;

use sqlx::{PgPool, Row};

/// Dead rows before a vacuum: this many plus `VACUUM_SCALE` of the live ones.
const VACUUM_THRESHOLD: i64 = 1000;
const VACUUM_SCALE: f64 = 0.01;
/// Changes since the last analyze before another: this many plus `ANALYZE_SCALE` of live.
const ANALYZE_THRESHOLD: i64 = 1000;
const ANALYZE_SCALE: f64 = 0.1;

/// The tables that churn: every message passes through them.
const TABLES: [&str; 2] = ["messages", "scheduled"];

/// Whether the server runs autovacuum.
async fn autovacuum_on(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT current_setting('autovacuum')::boolean")
        .fetch_one(pool)
        .await
}

/// What a table needs now, from its statistics counters.
fn needs(live: i64, dead: i64, modified: i64) -> Option<&'static str> {
    let live = live.max(0) as f64;
    if dead as f64 >= VACUUM_THRESHOLD as f64 + VACUUM_SCALE * live {
        Some("VACUUM (ANALYZE, SKIP_LOCKED)")
    } else if modified as f64 >= ANALYZE_THRESHOLD as f64 + ANALYZE_SCALE * live {
        Some("ANALYZE (SKIP_LOCKED)")
    } else {
        None
    }
}

/// One round: vacuums or analyzes each table that needs it.
async fn round(pool: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
    for table in TABLES {
        let name = format!("\"{schema}\".{table}");
        let row = sqlx::query(
            "SELECT n_live_tup, n_dead_tup, n_mod_since_analyze \
             FROM pg_stat_user_tables WHERE relid = to_regclass($1)",
        )
        .bind(&name)
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { continue };
        let (live, dead, modified) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if let Some(command) = needs(live, dead, modified) {
            let started = std::time::Instant::now();
            // The schema is a validated identifier (see `PostgresConfig::validate`).
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{command} {name}")))
                .execute(pool)
                .await?;
            tracing::debug!(table = %name, command, took = ?started.elapsed(),
                "tidings-postgres: maintenance");
        }
    }
    Ok(())
}

/// Keeps the queue tables of `schema` vacuumed and analyzed while autovacuum is off;
/// returns at once when it is on or `every` is zero, and when the pool closes.
pub(crate) async fn run_maintenance(pool: PgPool, schema: String, every: Duration) {
    if every.is_zero() {
        return;
    }
    match autovacuum_on(&pool).await {
        Ok(true) => return,
        Ok(false) => tracing::warn!(
            schema = %schema,
            "tidings-postgres: autovacuum is off on this server; vacuuming and analyzing \
             the queue tables from the transport every {every:?} when needed"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "tidings-postgres: cannot read the autovacuum setting; \
                no table maintenance from the transport");
            return;
        }
    }
    let tables: Vec<String> = TABLES.iter().map(|t| format!("\"{schema}\".{t}")).collect();
    let owned: Result<Option<bool>, _> = sqlx::query_scalar(
        "SELECT bool_and(pg_has_role(relowner, 'USAGE')) FROM pg_class \
         WHERE oid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)",
    )
    .bind(&tables)
    .fetch_one(&pool)
    .await;
    if !matches!(owned, Ok(Some(true))) {
        tracing::warn!(schema = %schema, "tidings-postgres: the queue tables belong to another \
            role; no table maintenance from the transport (vacuum them, or turn autovacuum on)");
        return;
    }
    loop {
        tokio::time::sleep(every).await;
        if pool.is_closed() {
            return;
        }
        match round(&pool, &schema).await {
            Ok(()) => {}
            Err(_) if pool.is_closed() => return,
            Err(e) => tracing::debug!(error = %e, "tidings-postgres: maintenance round failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::needs;

    #[test]
    fn thresholds() {
        assert_eq!(needs(0, 0, 0), None);
        assert_eq!(needs(10_000, 1_099, 0), None);
        assert!(needs(10_000, 1_100, 0).unwrap().starts_with("VACUUM"));
        assert_eq!(needs(10_000, 0, 1_999), None);
        assert!(needs(10_000, 0, 2_000).unwrap().starts_with("ANALYZE"));
        assert!(needs(-1, 1_000, 0).is_some());
    }
}
