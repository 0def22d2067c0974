//! `orderflow scale`: the scale-out test. Every replica is a separate `orderflow serve`
//! process on one database — `--apis` API replicas (`--service api`) and `--workers`
//! workers per service (`--service inventory` ...; `--payments-workers` for payments) —
//! started through [`tidings_chaos`] (a run of 0 kills starts a child and waits until it
//! is ready; [`procs`]). Orders are placed across the APIs for `--seconds`; one worker of
//! each service (its first replica, started before the others) is SIGKILLed
//! `--kill-after-ms` into the load and started again `--restart-after-ms` later. Then the
//! test waits for quiescence and checks the load run's invariants and the crash-cycle
//! ones ([`crate::chaos::checks`]), and prints how the work was shared ([`share`]).
//!
//! On PostgreSQL without `schema=` the run gets a schema of its own (business schemas
//! `<schema>_<service>` beside it); every child's transport pool is capped at
//! `max_connections=4` unless the URL says otherwise (14 processes share the server).
//! On RabbitMQ (`amqp://` + `--db-url`) the run gets a vhost of its own, deleted at the
//! end ([`vhost`]), and the business tables a schema of their own unless `--db-url` names
//! one; every process relays its outbox, one relay at a time holding the table's lease.

pub mod procs;
pub mod share;
pub mod vhost;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::chaos::{checks, ids, open_checked, own_schema};
use crate::report::{self, Check, Scope};

/// `orderflow scale`.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// API replicas (separate processes; orders are spread over them).
    #[arg(long, default_value_t = 2)]
    pub apis: usize,
    /// Worker processes per service.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Worker processes of payments (default: `--workers`).
    #[arg(long)]
    pub payments_workers: Option<usize>,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// HTTP clients placing orders.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Orders per second offered by all clients together (0 = as fast as answered).
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Kill one worker of each service this long into the load.
    #[arg(long, default_value_t = 5000)]
    pub kill_after_ms: u64,
    /// Start a killed worker again this long after its kill.
    #[arg(long, default_value_t = 5000)]
    pub restart_after_ms: u64,
    /// Kill nobody (a plain scale-out run, e.g. to measure back-pressure).
    #[arg(long)]
    pub no_kill: bool,
    /// The workers' payment timeout.
    #[arg(long, default_value_t = 30)]
    pub payment_timeout_secs: u64,
    /// Simulated payment gateway latency, ms.
    #[arg(long, default_value_t = 5)]
    pub payment_latency_ms: u64,
    /// Handlers at once per endpoint in each worker.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Handlers at once in each payments worker (default: `--concurrency`).
    #[arg(long)]
    pub payments_concurrency: Option<usize>,
    /// The APIs' back-pressure limit in ms (default: a third of the payment timeout; 0 = off).
    #[arg(long)]
    pub shed_after_ms: Option<u64>,
    /// How long to wait for quiescence after the load, in seconds.
    #[arg(long, default_value_t = 300)]
    pub settle_secs: u64,
    /// Data dir shared by the children (logs, notifications, work-share counts; default: a
    /// fresh one under the temp dir, kept afterwards).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seeds the run (printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Transport by URL: `postgres://…` (business tables in the same database) or a broker
    /// (`amqp://…`, `nats://…`) with `--db-url`.
    #[arg(long, env = "TIDINGS_URL", hide_env_values = true)]
    pub transport_url: String,
    /// On a broker: the PostgreSQL database of the business tables (`schema=` default: one
    /// of this run's own).
    #[arg(long, env = "ORDERFLOW_DB_URL", hide_env_values = true)]
    pub db_url: Option<String>,
}

/// Runs the scale-out test; `Err` when an invariant fails.
pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let stamp = chrono::Utc::now().timestamp_millis();
    let Some((vhost, url)) = vhost::OwnVhost::create(&args.transport_url, stamp).await? else {
        let url = args.transport_url.clone();
        return run_on(args, url, stamp).await;
    };
    println!("RabbitMQ vhost of this run: {}", vhost.name);
    let name = vhost.name.clone();
    let result = run_on(args, url, stamp).await;
    match vhost.delete().await {
        Ok(()) => println!("deleted the vhost {name}"),
        Err(e) => eprintln!("cannot delete the vhost {name}: {e}"),
    }
    result
}

/// The run on `transport_url` (the vhost of its own on RabbitMQ).
async fn run_on(args: ScaleArgs, transport_url: String, stamp: i64) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("orderflow-scale-{seed}-{stamp}")));
    std::fs::create_dir_all(data_dir.join("logs"))?;
    let pg = transport_url.starts_with("postgres");
    anyhow::ensure!(
        pg || args.db_url.is_some(),
        "the scale-out test needs one database for every process: a postgres:// transport, \
         or a broker with --db-url postgres://…"
    );
    let url = capped(&own_schema(&transport_url));
    let db_url = args.db_url.as_deref().map(|d| {
        let d = if d.contains("schema=") {
            d.to_string()
        } else {
            let sep = if d.contains('?') { '&' } else { '?' };
            format!("{d}{sep}schema=orderflow_scale_{stamp}")
        };
        capped(&d)
    });
    let plan = procs::plan(&args)?;
    println!(
        "orderflow scale: seed {seed}, {} processes ({} APIs, {} workers per service, {} payments), \
         {} s of load by {} clients at {}/s, data dir {}, transport {}",
        plan.len(),
        args.apis,
        args.workers,
        args.payments_workers.unwrap_or(args.workers),
        args.seconds,
        args.clients,
        args.rate,
        data_dir.display(),
        tidings::redact_url(&url)
    );
    let env = procs::Env {
        exe: std::env::current_exe()?,
        data_dir: data_dir.clone(),
        url: url.clone(),
        db_url: db_url.clone(),
        args: args.clone(),
    };
    // The schemas first, from one process: 14 children migrating a fresh transport
    // schema at once can deadlock in PostgreSQL's catalog.
    let (db, transport) = open_checked(Some(&url), db_url.as_deref(), &data_dir).await?;
    let scope = Scope {
        since_micros: chrono::Utc::now().timestamp_micros(),
    };
    let started = Instant::now();
    let mut cluster = procs::start(&env, &plan, seed)
        .await
        .map_err(|e| e.context(child_errors(&data_dir)))?;
    println!(
        "all {} processes ready in {:.1} s",
        plan.len(),
        started.elapsed().as_secs_f64()
    );

    let apis: Vec<String> = plan
        .iter()
        .filter(|p| p.service == "api")
        .map(|p| format!("http://{}", p.addr))
        .collect();
    cluster.cycle(
        Duration::from_millis(args.kill_after_ms),
        Duration::from_millis(args.restart_after_ms),
    );
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let load = crate::chaos::load::place_while(apis.clone(), args.clients, args.rate, move || {
        Instant::now() < until
    })
    .await;
    let kills = cluster
        .wait_restarts()
        .await
        .map_err(|e| e.context(child_errors(&data_dir)))?;
    if let Some(first) = &load.first_shed {
        println!("first refusal: {first}");
    }
    println!(
        "load done: {} orders answered 202 ({} shed with 503, {} requests repeated); {kills} workers killed and restarted",
        load.accepted.len(),
        load.shed,
        load.repeats
    );

    let settled = checks::wait_quiet(
        &db,
        transport.as_ref(),
        scope,
        Duration::from_secs(args.settle_secs),
    )
    .await?;
    let shares = share::read(&data_dir);
    cluster.stop().await;
    let mut all =
        report::check_invariants(&db, &data_dir.join("notifications.jsonl"), scope).await?;
    all.extend(
        checks::chaos_checks(
            &db,
            transport.as_ref(),
            scope,
            &ids(&load.accepted),
            &settled,
        )
        .await?,
    );
    all.push(Check {
        name: "no order refused (4xx)",
        ok: load.refused.is_empty(),
        detail: format!("{} refused {:?}", load.refused.len(), load.refused.first()),
    });
    let (completed, cancelled) = report::outcomes(&db, scope).await?;
    println!(
        "settled in {:.1} s; outcomes: {completed} completed, cancelled {cancelled:?}",
        settled.waited.as_secs_f64()
    );
    for api in &apis {
        let n = load
            .accepted
            .iter()
            .filter(|(_, u)| u.starts_with(api.as_str()))
            .count();
        println!("  API {api}: {n} orders accepted");
    }
    print!("{}", share::render(&shares));
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
    anyhow::ensure!(
        failed == 0,
        "{failed} invariant(s) failed (seed {seed}, data dir {}; logs in logs/)",
        data_dir.display()
    );
    println!(
        "scale: all {} invariants hold with {} processes, {kills} killed and restarted",
        all.len(),
        plan.len()
    );
    Ok(())
}

/// A PostgreSQL URL with `max_connections=4` unless it names a pool size.
fn capped(url: &str) -> String {
    if !url.starts_with("postgres") || url.contains("max_connections=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}max_connections=4")
}

/// The `Error:` lines of the children's logs (why a child exited by itself).
fn child_errors(data_dir: &std::path::Path) -> String {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("logs")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                for line in text.lines().filter(|l| l.starts_with("Error:")) {
                    out.push(format!("{name}: {line}"));
                }
            }
        }
    }
    if out.is_empty() {
        "no child logged an error".into()
    } else {
        format!("children's errors: {}", out.join(" | "))
    }
}
