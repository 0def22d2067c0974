//! The scale-out test's processes: which replicas run ([`plan`]), how each is started
//! (`orderflow serve --service … --replica NAME`, the URLs by environment), and the
//! running cluster. Every start is a [`tidings_chaos`] run of 0 kills (it spawns the
//! child and waits for `/admin/readyz`); the victims — the first worker of each service —
//! start first, and [`Cluster::cycle`] SIGKILLs each one a set time into the load and
//! starts it again later.
//!
//! Why the victims start first: on RabbitMQ an ordered endpoint's queue (the saga's,
//! payments') has a single active consumer, the first to subscribe; the others stand by.
//! Started first, the victim is the active one, so its kill makes the broker hand the
//! queue (and the deliveries the victim held) to the other replica.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tidings_chaos::{Chaos, ChaosConfig, Ready, Running};
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

/// The `orderflow serve` command of `p`.
fn command(env: &Env, p: &Proc) -> tokio::process::Command {
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

/// The running replicas.
#[derive(Debug)]
pub struct Cluster {
    env: Env,
    seed: u64,
    stable: Vec<Running>,
    /// Victims not killed yet.
    victims: Vec<(Proc, Running)>,
    /// Victims being killed and started again.
    cycling: Vec<JoinHandle<anyhow::Result<Running>>>,
    restarted: Vec<Running>,
}

const READY: Duration = Duration::from_secs(120);

/// Starts `p` and returns once it is ready.
async fn start_one(env: &Env, p: &Proc, seed: u64) -> anyhow::Result<Running> {
    let (env, p2) = (env.clone(), p.clone());
    let chaos = Chaos::new(
        ChaosConfig::new(seed, 0).ready_timeout(READY),
        move || command(&env, &p2),
        Ready::http(p.addr, "/admin/readyz"),
    );
    let outcome = chaos
        .run(|_| async {})
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.name))?;
    Ok(outcome.child)
}

/// Starts every replica of `plan` at once and waits until all are ready.
async fn start_all<'a>(
    env: &Env,
    plan: impl Iterator<Item = &'a Proc>,
    seed: u64,
) -> anyhow::Result<Vec<(Proc, Running)>> {
    let starting: Vec<_> = plan
        .map(|p| {
            let (env, p) = (env.clone(), p.clone());
            tokio::spawn(async move {
                let child = start_one(&env, &p, seed).await?;
                Ok::<_, anyhow::Error>((p, child))
            })
        })
        .collect();
    let mut out = Vec::new();
    for s in starting {
        out.push(s.await??);
    }
    Ok(out)
}

/// Starts every replica, the victims first, and returns once all are ready.
pub async fn start(env: &Env, plan: &[Proc], seed: u64) -> anyhow::Result<Cluster> {
    let victims = start_all(env, plan.iter().filter(|p| p.victim), seed).await?;
    let stable = start_all(env, plan.iter().filter(|p| !p.victim), seed).await?;
    Ok(Cluster {
        env: env.clone(),
        seed,
        stable: stable.into_iter().map(|(_, c)| c).collect(),
        victims,
        cycling: Vec::new(),
        restarted: Vec::new(),
    })
}

impl Cluster {
    /// From now on: SIGKILLs every victim `kill_after` later (`Err` if it had exited by
    /// itself) and starts it again `restart_after` after its kill.
    pub fn cycle(&mut self, kill_after: Duration, restart_after: Duration) {
        let t0 = Instant::now();
        for (p, mut child) in self.victims.drain(..) {
            let (env, seed) = (self.env.clone(), self.seed);
            self.cycling.push(tokio::spawn(async move {
                tokio::time::sleep(kill_after).await;
                child
                    .check_alive()
                    .map_err(|e| anyhow::anyhow!("{} before its kill: {e}", p.name))?;
                let pid = child.id().unwrap_or(0);
                child.kill().await?;
                println!(
                    "killed {} (pid {pid}, SIGKILL) {:.1} s into the load",
                    p.name,
                    t0.elapsed().as_secs_f64()
                );
                tokio::time::sleep(restart_after).await;
                let next = start_one(&env, &p, seed).await?;
                println!(
                    "restarted {} (pid {}), ready {:.1} s into the load",
                    p.name,
                    next.id().unwrap_or(0),
                    t0.elapsed().as_secs_f64()
                );
                Ok(next)
            }));
        }
    }

    /// Waits until every victim was killed and is ready again; returns how many.
    pub async fn wait_restarts(&mut self) -> anyhow::Result<u32> {
        let mut kills = 0;
        for c in self.cycling.drain(..) {
            self.restarted.push(c.await??);
            kills += 1;
        }
        Ok(kills)
    }

    /// Kills every replica (the test is over).
    pub async fn stop(self) {
        for c in &self.cycling {
            c.abort();
        }
        let victims = self.victims.into_iter().map(|(_, c)| c);
        for r in self.stable.into_iter().chain(victims).chain(self.restarted) {
            let _ = r.kill().await;
        }
    }
}
