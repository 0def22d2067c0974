//! Crash-cycle testing as a library: run a service as a child process, drive load at it,
//! kill it with SIGKILL at seeded random moments, restart it, then check invariants.
//!
//! A [`Chaos`] run starts the child ([`Chaos::new`] takes a function that builds its
//! [`Command`], called again for every restart), waits until it is [`Ready`], hands a
//! [`Stop`] signal to the caller's load, and then, `cycles` times: waits a random time in
//! `[min, max]` (from a seeded generator, so a run replays with its seed), kills the child
//! with SIGKILL, reaps it, restarts it and waits until it is ready again. After the last
//! restart it signals the load to stop, waits for it, and returns an [`Outcome`] holding the
//! load's result and the child, still running, so the caller can wait for quiescence and
//! check its invariants against the service's data — then [`Running::kill`] it.
//!
//! A child that exits by itself (a crash the chaos did not cause) or does not get ready in
//! time ends the run with an error naming the cycle.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings_chaos::{Chaos, ChaosConfig, Ready};
//!
//! # async fn f() -> Result<(), tidings_chaos::ChaosError> {
//! let addr: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
//! let config = ChaosConfig::new(42, 20).kill_between(Duration::from_secs(1), Duration::from_secs(4));
//! let chaos = Chaos::new(
//!     config,
//!     || {
//!         let mut c = tokio::process::Command::new("my-service");
//!         c.arg("--port").arg("8080");
//!         c
//!     },
//!     Ready::http(addr, "/healthz"),
//! );
//! let outcome = chaos
//!     .run(|stop| async move {
//!         let mut sent = 0u64;
//!         while !stop.is_stopped() {
//!             // place requests at the service; repeat unanswered ones
//!             sent += 1;
//!             tokio::time::sleep(Duration::from_millis(10)).await;
//!         }
//!         sent
//!     })
//!     .await?;
//! println!("{} kills, {} requests", outcome.cycles, outcome.load);
//! // wait for quiescence, check invariants on the service's data, then:
//! outcome.child.kill().await?;
//! # Ok(()) }
//! ```

mod child;
mod ready;
mod schedule;

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::watch;

pub use child::Running;
pub use ready::Ready;
pub use schedule::Schedule;

/// Why a chaos run stopped early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// The child could not be started.
    #[error("cannot start the child (cycle {cycle}): {source}")]
    Spawn {
        /// The cycle (0 = the first start).
        cycle: u32,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The child exited by itself (not killed by the chaos).
    #[error("the child exited by itself during cycle {cycle}: {status}")]
    Exited {
        /// The cycle.
        cycle: u32,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The child did not get ready in time.
    #[error("the child was not ready {timeout:?} after its start (cycle {cycle})")]
    NotReady {
        /// The cycle.
        cycle: u32,
        /// How long it was given.
        timeout: Duration,
    },
    /// Killing or reaping the child failed.
    #[error("cannot kill the child: {0}")]
    Kill(#[source] std::io::Error),
    /// The load task panicked.
    #[error("the load panicked: {0}")]
    Load(String),
}

impl ChaosError {
    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ChaosError::Spawn { .. } => "spawn",
            ChaosError::Exited { .. } => "exited",
            ChaosError::NotReady { .. } => "not-ready",
            ChaosError::Kill(_) => "kill",
            ChaosError::Load(_) => "load",
        }
    }
}

/// How many kills, how far apart, with which seed.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Seeds the kill moments: the same seed gives the same schedule.
    pub seed: u64,
    /// Kills (each followed by a restart).
    pub cycles: u32,
    /// Shortest time from ready to kill.
    pub min: Duration,
    /// Longest time from ready to kill.
    pub max: Duration,
    /// How long a (re)start may take to get ready.
    pub ready_timeout: Duration,
    /// Print one line per cycle on stderr.
    pub verbose: bool,
}

impl ChaosConfig {
    /// `cycles` kills, 1–4 s after each start, seeded by `seed`.
    pub fn new(seed: u64, cycles: u32) -> Self {
        ChaosConfig {
            seed,
            cycles,
            min: Duration::from_secs(1),
            max: Duration::from_secs(4),
            ready_timeout: Duration::from_secs(60),
            verbose: false,
        }
    }

    /// Kills between `min` and `max` after each start is ready (swapped if reversed).
    pub fn kill_between(mut self, min: Duration, max: Duration) -> Self {
        (self.min, self.max) = if min <= max { (min, max) } else { (max, min) };
        self
    }

    /// How long a (re)start may take to get ready.
    pub fn ready_timeout(mut self, d: Duration) -> Self {
        self.ready_timeout = d;
        self
    }

    /// Print one line per cycle on stderr.
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }
}

/// Tells the load that the kills are over (cheap to clone).
#[derive(Debug, Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Whether the run asked the load to stop.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the run asks the load to stop.
    pub async fn stopped(&mut self) {
        // An error means the run (the sender) is gone: stopped too.
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome<T> {
    /// Kills done (each followed by a restart that got ready).
    pub cycles: u32,
    /// The seed (print it: a failure replays with it).
    pub seed: u64,
    /// What the load returned.
    pub load: T,
    /// The child after its last restart, still running.
    pub child: Running,
    /// From the first start to the load's end.
    pub elapsed: Duration,
}

type MakeCommand = Box<dyn Fn() -> Command + Send + Sync>;

/// A crash-cycle run (see the crate docs).
pub struct Chaos {
    config: ChaosConfig,
    command: MakeCommand,
    ready: Ready,
}

impl std::fmt::Debug for Chaos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chaos")
            .field("config", &self.config)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Chaos {
    /// A run of the child `command` builds (called for every start), ready when `ready`
    /// says so.
    pub fn new(
        config: ChaosConfig,
        command: impl Fn() -> Command + Send + Sync + 'static,
        ready: Ready,
    ) -> Self {
        Chaos {
            config,
            command: Box::new(command),
            ready,
        }
    }

    /// The kill moments this run will use.
    pub fn schedule(&self) -> Schedule {
        Schedule::new(self.config.seed, self.config.min, self.config.max)
    }

    async fn start(&self, cycle: u32) -> Result<Running, ChaosError> {
        let mut child = Running::spawn((self.command)(), cycle)?;
        self.ready
            .wait(&mut child, self.config.ready_timeout, cycle)
            .await?;
        Ok(child)
    }

    /// Starts the child, runs `load` beside the kills, and returns once the kills are done
    /// and the load has returned (see the crate docs). Prints the seed on stderr.
    pub async fn run<L, F, T>(self, load: L) -> Result<Outcome<T>, ChaosError>
    where
        L: FnOnce(Stop) -> F,
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let c = &self.config;
        eprintln!(
            "chaos: seed {} ({} kills, {:?}..{:?} apart; replay with the same seed)",
            c.seed, c.cycles, c.min, c.max
        );
        let started = Instant::now();
        let mut schedule = self.schedule();
        let mut child = self.start(0).await?;
        let (tx, rx) = watch::channel(false);
        let load = tokio::spawn(load(Stop(rx)));
        let mut result = Ok(());
        for cycle in 1..=c.cycles {
            let wait = schedule.next_wait();
            tokio::time::sleep(wait).await;
            if let Err(e) = child.kill_now(cycle).await {
                result = Err(e);
                break;
            }
            if c.verbose {
                eprintln!("chaos: cycle {cycle}/{}: killed after {wait:?}", c.cycles);
            }
            match self.start(cycle).await {
                Ok(next) => child = next,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let _ = tx.send(true);
        let load = load.await.map_err(|e| ChaosError::Load(e.to_string()));
        result?;
        Ok(Outcome {
            cycles: c.cycles,
            seed: c.seed,
            load: load?,
            child,
            elapsed: started.elapsed(),
        })
    }
}
