//! `orderflow chaos`: crash-cycle testing of OrderFlow with [`tidings_chaos`]. It runs
//! `orderflow serve` as a child process on a data dir of its own, places orders over HTTP
//! from client tasks meanwhile ([`load`]), kills the child with SIGKILL at seeded random
//! moments and restarts it; then it waits for quiescence and checks the load run's
//! invariants ([`crate::report::check_invariants`]) plus the crash-cycle ones
//! ([`checks`]). Also fault injection for in-process tests ([`Duplicating`]).

pub mod checks;
mod duplicating;
pub mod load;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tidings_chaos::{Chaos, ChaosConfig, Ready};
use tidings_core::transport::Transport;

pub use duplicating::Duplicating;

use crate::db::Db;
use crate::opt::ChaosArgs;
use crate::report::{self, Check, Scope};

/// Runs `orderflow chaos`; `Err` when an invariant fails (the summary says which).
pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "orderflow-chaos-{seed}-{}",
            chrono::Utc::now().timestamp_millis()
        )),
    };
    std::fs::create_dir_all(&data_dir)?;
    let url = args.transport_url.as_deref().map(own_schema);
    let shown = url.as_deref().map(tidings::redact_url);
    println!(
        "orderflow chaos: seed {seed}, {} cycles, kills {}..{} ms after ready, {} clients at {}/s in all, data dir {}, transport {}",
        args.cycles,
        args.min_ms,
        args.max_ms,
        args.clients,
        args.rate,
        data_dir.display(),
        shown.as_deref().unwrap_or("sqlite (embedded)")
    );
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let scope = Scope {
        since_micros: chrono::Utc::now().timestamp_micros(),
    };
    let exe = std::env::current_exe()?;
    let log = data_dir.join("serve.log");
    let (dir, timeout, child_url) = (data_dir.clone(), args.payment_timeout_secs, url.clone());
    let command = move || {
        let mut c = tokio::process::Command::new(&exe);
        c.arg("serve")
            .arg("--data-dir")
            .arg(&dir)
            .arg("--port")
            .arg(addr.port().to_string())
            .arg("--payment-timeout-secs")
            .arg(timeout.to_string())
            .env_remove("TIDINGS_URL")
            .stdin(Stdio::null());
        // The URL (it may hold a password) goes by environment, never on the command line.
        if let Some(u) = &child_url {
            c.env("TIDINGS_URL", u);
        }
        match append(&log) {
            Some((out, err)) => c.stdout(out).stderr(err),
            None => c.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        c
    };
    let config = ChaosConfig::new(seed, args.cycles)
        .kill_between(
            Duration::from_millis(args.min_ms),
            Duration::from_millis(args.max_ms),
        )
        .ready_timeout(Duration::from_secs(120));
    let chaos = Chaos::new(config, command, Ready::http(addr, "/admin/readyz"));
    let base = format!("http://{addr}");
    let (clients, rate) = (args.clients, args.rate);
    let outcome = chaos
        .run(move |stop| load::place_until_stopped(base, clients, rate, stop))
        .await?;
    println!(
        "kills done: {} cycles in {:.1}s; {} orders answered 202, {} requests repeated",
        outcome.cycles,
        outcome.elapsed.as_secs_f64(),
        outcome.load.accepted.len(),
        outcome.load.repeats
    );

    // Quiescence with the last child running, then the checks on what it left.
    let (db, transport) = open_checked(url.as_deref(), None, &data_dir).await?;
    let settled = checks::wait_quiet(
        &db,
        transport.as_ref(),
        scope,
        Duration::from_secs(args.settle_secs),
    )
    .await?;
    outcome.child.kill().await?;
    let mut all =
        report::check_invariants(&db, &data_dir.join("notifications.jsonl"), scope).await?;
    all.extend(
        checks::chaos_checks(
            &db,
            transport.as_ref(),
            scope,
            &ids(&outcome.load.accepted),
            &settled,
        )
        .await?,
    );
    all.push(Check {
        name: "no order refused (4xx)",
        ok: outcome.load.refused.is_empty(),
        detail: format!(
            "{} refused {:?}",
            outcome.load.refused.len(),
            outcome.load.refused.first()
        ),
    });
    let (completed, cancelled) = report::outcomes(&db, scope).await?;
    println!(
        "settled in {:.1}s; outcomes: {completed} completed, cancelled {cancelled:?}",
        settled.waited.as_secs_f64()
    );
    for c in &all {
        println!(
            "  [{}] {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    let failed = all.iter().filter(|c| !c.ok).count();
    let _ = transport.close().await;
    db.close().await;
    if failed > 0 {
        anyhow::bail!(
            "{failed} invariant(s) failed (seed {seed}, data dir {}; child log serve.log)",
            data_dir.display()
        );
    }
    println!(
        "chaos: all {} invariants hold after {} kills (seed {seed}, {:.1}s)",
        all.len(),
        outcome.cycles,
        outcome.elapsed.as_secs_f64() + settled.waited.as_secs_f64()
    );
    Ok(())
}

/// On PostgreSQL without `schema=`: a schema of this run's own, so queues of other runs
/// (or tests) on the same database do not count as work left.
pub(crate) fn own_schema(url: &str) -> String {
    let pg = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !pg || url.contains("schema=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}schema=orderflow_chaos_{}",
        chrono::Utc::now().timestamp_millis()
    )
}

/// The ids of accepted orders.
pub(crate) fn ids(accepted: &[(uuid::Uuid, String)]) -> Vec<uuid::Uuid> {
    accepted.iter().map(|(id, _)| *id).collect()
}

/// The children's database and transport, for the checks: on PostgreSQL the transport's
/// database (business schemas beside it); on a broker the transport and `db_url` (or the
/// data dir's SQLite file); without a URL the data dir's SQLite transport.
pub(crate) async fn open_checked(
    url: Option<&str>,
    db_url: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(Db, Arc<dyn Transport>)> {
    let shown = |u: &str| tidings::redact_url(u);
    if let Some(u) = url.filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    {
        let config = tidings_postgres::PostgresConfig::from_url(u)
            .map_err(|e| anyhow::anyhow!("{}: {e}", shown(u)))?
            .with_application_name("orderflow-checks");
        let transport = tidings_postgres::PostgresTransport::connect(config)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", shown(u)))?;
        let db = Db::on_pg_transport(&transport).await?;
        return Ok((db, Arc::new(transport)));
    }
    let db = match db_url {
        Some(d) => Db::open_pg(d).await?,
        None => Db::open(&data_dir.join("orderflow.db"), false).await?,
    };
    let url = match url {
        Some(u) => u.to_string(),
        None => format!("sqlite://{}", data_dir.join("orderflow.db").display()),
    };
    let transport = tidings::connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", shown(&url)))?;
    Ok((db, transport))
}

/// The child's log, appended to by every start.
pub(crate) fn append(path: &PathBuf) -> Option<(Stdio, Stdio)> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()?;
    let g = f.try_clone().ok()?;
    Some((Stdio::from(f), Stdio::from(g)))
}
