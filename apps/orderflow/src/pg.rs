//! OrderFlow's business tables on PostgreSQL: the schemas (one per service, named
//! `<base>_<service>`; `schema_pg.sql`), the saga table and its `saga_orders` view, and the
//! connection for a business database of its own (broker transports).
//!
//! Many processes (API replicas, service workers) start at once against one database: the
//! DDL runs in one transaction under an advisory lock, so concurrent `CREATE .. IF NOT
//! EXISTS` never race on the catalog.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

use crate::sql::PgNames;

const SCHEMA: &str = include_str!("schema_pg.sql");

/// The base schema of a business database URL without `schema=`.
pub const DEFAULT_BASE: &str = "orderflow";

/// Creates the schemas, tables, saga table and view (idempotent; safe when many
/// processes start together). In `<base>` itself: the inbox table for the relay mode (on
/// the PostgreSQL transport the transport's own inbox is there already).
pub async fn apply_schema(pool: &PgPool, names: &PgNames) -> anyhow::Result<()> {
    let base = names.base();
    let saga = names.schema("saga");
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('orderflow_schema'))")
        .execute(&mut *tx)
        .await?;
    // The view is created last, in the same transaction: if it is there, so is the rest.
    // Then no DDL at all: `CREATE INDEX IF NOT EXISTS` locks its table before it looks,
    // and would deadlock with the running replicas' writes.
    let done: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{saga}.saga_orders"))
        .fetch_one(&mut *tx)
        .await?;
    if done.is_some() {
        tx.commit().await?;
        return Ok(());
    }
    let ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {base};\n\
         CREATE TABLE IF NOT EXISTS {base}.inbox (message_id UUID NOT NULL, endpoint TEXT NOT NULL, \
         processed_at TIMESTAMPTZ NOT NULL DEFAULT now(), expires_at TIMESTAMPTZ NOT NULL, \
         PRIMARY KEY (message_id, endpoint));\n{}",
        SCHEMA.replace("{B}", base)
    );
    sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
    tidings_postgres::saga::create_table_in(&mut tx, &format!("{saga}.")).await?;
    let view = format!(
        "CREATE OR REPLACE VIEW {saga}.saga_orders AS \
         SELECT key AS order_id, state, data->>'reason' AS reason, version \
         FROM {saga}.tidings_saga_instances WHERE saga = 'order'"
    );
    sqlx::raw_sql(AssertSqlSafe(view)).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A checked base schema name (it is spliced into SQL).
pub fn check_base(base: &str) -> anyhow::Result<()> {
    let ok = !base.is_empty()
        && base.len() <= 48
        && base.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        ok,
        "invalid schema name `{base}`: use [a-z_][a-z0-9_]*, at most 48 characters"
    );
    Ok(())
}

/// A pool on the business database `url` (`schema=` names the base schema, default
/// [`DEFAULT_BASE`]; `max_connections=` the pool size, default 8), its `search_path` the
/// base schema (where the relay's outbox table and the inbox live).
pub async fn connect(url: &str) -> anyhow::Result<(PgPool, Arc<PgNames>)> {
    let shown = tidings::redact_url(url);
    let mut parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
    let (mut base, mut size) = (DEFAULT_BASE.to_string(), 8u32);
    let mut rest = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "schema" => base = v.into_owned(),
            "max_connections" => {
                size = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{shown}: max_connections is not a number"))?
            }
            _ => rest.push((k.into_owned(), v.into_owned())),
        }
    }
    check_base(&base)?;
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    let opts = PgConnectOptions::from_str(parsed.as_str())
        .map_err(|e| {
            anyhow::anyhow!(
                "{shown}: {}",
                tidings_core::redact::scrub_url(&e.to_string(), url)
            )
        })?
        .application_name("orderflow")
        .options([("search_path", base.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(size.max(2))
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to {shown}: {}",
                tidings_core::redact::scrub_url(&e.to_string(), url)
            )
        })?;
    Ok((pool, Arc::new(PgNames::new(&base))))
}
