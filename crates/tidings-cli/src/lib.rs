//! The `tidings` command: operate Tidings on any transport by URL — `queues`, `dlq
//! list|show|replay|purge`, `tail`, `topology`, `sagas list|show`, `dashboard`, `bench`.
//!
//! [`run`] connects by URL and writes to the terminal; [`execute`] runs a command on a
//! transport you hand it, writing to any [`Io`] (tests use it with an in-memory transport).

mod bench;
mod connect;
mod dashboard;
mod dlq;
mod dlq_ops;
mod format;
pub mod opt;
mod permissions;
mod queues;
pub mod sagas;
mod tail;
mod topology;

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;
use tidings::transport::Transport;

pub use connect::connect;
pub use opt::Opt;

/// Where a command writes, and whether it may ask questions.
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut (dyn Write + Send),
    /// Whether stdin is a terminal a person can answer prompts on.
    pub interactive: bool,
    /// Whether to draw progress bars (on stderr).
    pub progress: bool,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("interactive", &self.interactive)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

/// Runs the command `opt` names against the transport at `--url`, on the terminal.
pub async fn run(opt: Opt) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    let mut io = Io {
        out: &mut stdout,
        interactive: std::io::stdin().is_terminal(),
        progress: std::io::stderr().is_terminal(),
    };
    match &opt.command {
        // Reads a file or an admin API over HTTP; needs no transport.
        opt::Command::Topology(args) => {
            return topology::run(args, opt.url.as_deref(), opt.connect_timeout, &mut io).await
        }
        // Connect to what they measure themselves.
        opt::Command::Bench(args) => return bench::run(args, &mut io).await,
        opt::Command::BenchDrain(args) => return tidings_bench::drain_child(args.clone()).await,
        // Reads the database that holds the sagas; needs no transport.
        opt::Command::Sagas(args) => {
            let db = args.db.as_deref().or(opt.url.as_deref()).context(
                "no saga database: pass --db (or --url), e.g. --db sqlite://orderflow-data/orderflow.db",
            )?;
            let sagas = connect::scrub_result(sagas::queries(db).await, db)?;
            return match &args.command {
                opt::SagaCommand::List(a) => sagas::list(a, sagas.as_ref(), &mut io).await,
                opt::SagaCommand::Show(a) => sagas::show(a, sagas.as_ref(), &mut io).await,
            };
        }
        _ => {}
    }
    let url = opt.url.as_deref().context(
        "no transport URL: pass --url (or set TIDINGS_URL), e.g. --url sqlite://tidings.db",
    )?;
    let transport = connect(url, opt.connect_timeout).await?;
    let result = execute(&opt, transport.clone(), &mut io).await;
    let _ = transport.close().await;
    result.map_err(|e| connect::scrub(e, url))
}

/// Runs `opt`'s command on `transport`, writing to `io`.
pub async fn execute(
    opt: &Opt,
    transport: Arc<dyn Transport>,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    use opt::{Command, DlqCommand};
    let t = transport.as_ref();
    match &opt.command {
        Command::Queues(a) => queues::run(a, t, io).await,
        Command::Dlq(DlqCommand::List(a)) => dlq::list(a, t, io).await,
        Command::Dlq(DlqCommand::Show(a)) => dlq::show(a, t, io).await,
        Command::Dlq(DlqCommand::Replay(a)) => dlq_ops::replay(a, t, io).await,
        Command::Dlq(DlqCommand::Purge(a)) => dlq_ops::purge(a, t, io).await,
        Command::Tail(a) => tail::run(a, t, io).await,
        Command::Topology(a) => topology::run(a, opt.url.as_deref(), opt.connect_timeout, io).await,
        Command::Dashboard(a) => dashboard::run(a, transport.clone(), opt.url.as_deref(), io).await,
        Command::Sagas(_) => anyhow::bail!("`tidings sagas` reads a database, not a transport"),
        Command::Bench(a) => bench::run(a, io).await,
        Command::BenchDrain(a) => tidings_bench::drain_child(a.clone()).await,
    }
}
