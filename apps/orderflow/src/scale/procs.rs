//! The scale-out test's processes: which replicas run ([`plan`]), how each is started
//! (`orderflow serve --service … --replica NAME`, the URLs by environment), and the
//! running cluster: stable replicas are [`tidings_chaos`] runs of 0 kills, the first
//! worker of each service a run of 1 kill whose restart waits `--restart-after-ms`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings_chaos::{Chaos, ChaosConfig, ChaosError, Outcome, Ready, Running};
use tokio::task::JoinHandle;

use super::ScaleArgs;
use crate::chaos::append;

/// The services a worker runs, one process each (`orderflow serve --service NAME`).
pub const SERVICES: &[&str] = &[
    "saga",
    "inventory",
    "payments",
    "shipping",
    "notifications",
    "views",
];

/// One replica.
#[derive(Debug, Clone)]
pub struct Proc {
    /// `api-1`, `payments-2`, …
    pub name: String,
    /// `api` or a service of [`SERVICES`].
    pub service: &'static str,
    /// Where it serves HTTP (`/admin/readyz`; orders on the APIs).
    pub addr: SocketAddr,
    /// Killed once during the load and started again later.
    pub victim: bool,
}

/// What every child shares.
#[derive(Debug, Clone)]
pub struct Env {
    /// The `orderflow` binary.
    pub exe: PathBuf,
    /// The shared data dir.
    pub data_dir: PathBuf,
    /// The transport URL (by environment, never on a command line).
    pub url: String,
    /// The business database on a broker.
    pub db_url: Option<String>,
    /// The test's options.
    pub args: ScaleArgs,
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The replicas: the APIs, then `--workers` per service (`--payments-workers` for
/// payments); the first worker of each service is the victim unless `--no-kill`.
pub fn plan(args: &ScaleArgs) -> anyhow::Result<Vec<Proc>> {
    anyhow::ensure!(args.apis >= 1, "--apis must be at least 1");
    let mut out = Vec::new();
    for i in 1..=args.apis {
        out.push(Proc {
            name: format!("api-{i}"),
            service: "api",
            addr: free_addr()?,
            victim: false,
        });
    }
    for service in SERVICES {
        let n = match *service {
            "payments" => args.payments_workers.unwrap_or(args.workers),
            _ => args.workers,
        };
        anyhow::ensure!(n >= 1, "every service needs at least one worker");
        for i in 1..=n {
            out.push(Proc {
                name: format!("{service}-{i}"),
                service,
                addr: free_addr()?,
                victim: i == 1 && n >= 2 && !args.no_kill,
            });
        }
    }
    Ok(out)
}

/// The `orderflow serve` command of `p`; `delay` before it starts.
fn command(env: &Env, p: &Proc, delay: Duration) -> tokio::process::Command {
    let a = &env.args;
    let mut c = tokio::process::Command::new(&env.exe);
    let concurrency = match p.service {
        "payments" => a.payments_concurrency.unwrap_or(a.concurrency),
        _ => a.concurrency,
    };
    c.arg("serve")
        .args(["--service", p.service, "--replica", &p.name])
        .arg("--data-dir")
        .arg(&env.data_dir)
        .args(["--port", &p.addr.port().to_string()])
        .args([
            "--payment-timeout-secs",
            &a.payment_timeout_secs.to_string(),
        ])
        .args(["--payment-latency-ms", &a.payment_latency_ms.to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--start-delay-ms", &delay.as_millis().to_string()])
        .env("TIDINGS_URL", &env.url)
        .env_remove("ORDERFLOW_DB_URL")
        .stdin(Stdio::null());
    if let Some(ms) = a.shed_after_ms {
        c.args(["--shed-after-ms", &ms.to_string()]);
    }
    if let Some(d) = &env.db_url {
        c.env("ORDERFLOW_DB_URL", d);
    }
    match append(&env.data_dir.join("logs").join(format!("{}.log", p.name))) {
        Some((out, err)) => c.stdout(out).stderr(err),
        None => c.stdout(Stdio::null()).stderr(Stdio::null()),
    };
    c
}

type Victim = JoinHandle<Result<Outcome<()>, ChaosError>>;

/// The running replicas.
#[derive(Debug)]
pub struct Cluster {
    stable: Vec<Running>,
    victims: Vec<Victim>,
    restarted: Vec<Running>,
}

const READY: Duration = Duration::from_secs(120);

/// Starts every replica and returns once all are ready (the victims' kills are timed
/// from then on).
pub async fn start(env: &Env, plan: &[Proc], seed: u64) -> anyhow::Result<Cluster> {
    let mut starting = Vec::new();
    for p in plan.iter().filter(|p| !p.victim) {
        let (env, p, addr) = (env.clone(), p.clone(), p.addr);
        let chaos = Chaos::new(
            ChaosConfig::new(seed, 0).ready_timeout(READY),
            move || command(&env, &p, Duration::ZERO),
            Ready::http(addr, "/admin/readyz"),
        );
        starting.push(tokio::spawn(chaos.run(|_| async {})));
    }
    let mut victims = Vec::new();
    for (i, p) in plan.iter().filter(|p| p.victim).enumerate() {
        let (env2, p2) = (env.clone(), p.clone());
        let a = &env.args;
        let (kill, later) = (
            Duration::from_millis(a.kill_after_ms),
            Duration::from_millis(a.restart_after_ms),
        );
        let starts = Arc::new(AtomicU32::new(0));
        let chaos = Chaos::new(
            ChaosConfig::new(seed.wrapping_add(i as u64 + 1), 1)
                .kill_between(kill, kill)
                .ready_timeout(READY + later)
                .verbose(true),
            move || {
                // the first start at once, the restart after the kill `later`
                let n = starts.fetch_add(1, Ordering::Relaxed);
                command(&env2, &p2, if n == 0 { Duration::ZERO } else { later })
            },
            Ready::http(p.addr, "/admin/readyz"),
        );
        victims.push(tokio::spawn(chaos.run(|mut stop| async move {
            stop.stopped().await;
        })));
    }
    let mut stable = Vec::new();
    for s in starting {
        stable.push(s.await??.child);
    }
    for p in plan.iter().filter(|p| p.victim) {
        ready(p.addr).await?;
    }
    Ok(Cluster {
        stable,
        victims,
        restarted: Vec::new(),
    })
}

/// Polls `GET /admin/readyz` until it answers 2xx.
async fn ready(addr: SocketAddr) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + READY;
    let url = format!("http://{addr}/admin/readyz");
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{addr} was not ready in {READY:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cluster {
    /// Waits until every victim was killed and is ready again; returns how many.
    pub async fn wait_restarts(&mut self) -> anyhow::Result<u32> {
        let mut kills = 0;
        for v in self.victims.drain(..) {
            let outcome = v.await??;
            kills += outcome.cycles;
            self.restarted.push(outcome.child);
        }
        Ok(kills)
    }

    /// Kills every replica (the test is over).
    pub async fn stop(self) {
        for v in &self.victims {
            v.abort();
        }
        for r in self.stable.into_iter().chain(self.restarted) {
            let _ = r.kill().await;
        }
    }
}
