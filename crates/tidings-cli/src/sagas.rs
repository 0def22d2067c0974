//! `tidings sagas list|show`: saga instances in a service's database — which state, since
//! when, stuck ones first — read through the store's [`SagaQueries`].

use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use tidings::saga::{SagaQueries, SagaQuery, SagaStatus};

use crate::format::{ago, printable, table};
use crate::opt::{SagaListArgs, SagaShowArgs};
use crate::Io;

/// The saga queries of the database `url` names. Sagas live in a service's SQL database:
/// on the SQLite transport the transport's file; on a broker the service's own database
/// (pass it with `--db`).
pub async fn queries(url: &str) -> anyhow::Result<Arc<dyn SagaQueries>> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "sqlite" => {
            let config = tidings::sqlite::SqliteConfig::from_url(url)?;
            anyhow::ensure!(
                config.path.exists(),
                "no database at {}: sagas are read from an existing file",
                config.path.display()
            );
            let q = tidings::sqlite::SqliteSagaQueries::open(&config.path)
                .await
                .with_context(|| format!("opening {}", config.path.display()))?;
            Ok(Arc::new(q))
        }
        other => anyhow::bail!(
            "sagas are read from the SQL database that holds them; `{other}://` is not one this \
             command reads (use --db sqlite://FILE: on RabbitMQ or NATS, the service's own database)"
        ),
    }
}

/// `tidings sagas list`.
pub(crate) async fn list(
    args: &SagaListArgs,
    sagas: &dyn SagaQueries,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let status = match args.status.as_deref() {
        None => None,
        Some(s) => Some(
            SagaStatus::parse(s)
                .with_context(|| format!("--status {s}: expected active or completed"))?,
        ),
    };
    let query = SagaQuery {
        saga: args.saga.clone(),
        state: args.state.clone(),
        status,
        updated_before: match args.stuck_for {
            Some(d) => Some(Utc::now() - chrono::Duration::from_std(d)?),
            None => None,
        },
        offset: args.offset,
        limit: args.limit,
    };
    let found = sagas.list(&query).await?;
    if args.json {
        let json = serde_json::to_string_pretty(&found)?;
        writeln!(io.out, "{}", printable(&json, true))?;
        return Ok(());
    }
    if found.is_empty() {
        writeln!(io.out, "no sagas match")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|s| {
            vec![
                s.saga.clone(),
                s.key.clone(),
                s.state.clone(),
                s.status.as_str().to_string(),
                ago(s.updated_at),
                ago(s.created_at),
                s.version.to_string(),
                s.pending_compensations.to_string(),
                s.armed_timeouts.to_string(),
            ]
        })
        .collect();
    table(
        io.out,
        &[
            "saga", "key", "state", "status", "since", "started", "version", "undo", "timeouts",
        ],
        &rows,
        &[6, 7, 8],
    )?;
    Ok(())
}

/// `tidings sagas show SAGA KEY`.
pub(crate) async fn show(
    args: &SagaShowArgs,
    sagas: &dyn SagaQueries,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let record = sagas
        .show(&args.saga, &args.key)
        .await?
        .with_context(|| format!("no saga {} with key {}", args.saga, args.key))?;
    let json = serde_json::to_string_pretty(&record)?;
    writeln!(io.out, "{}", printable(&json, true))?;
    Ok(())
}
