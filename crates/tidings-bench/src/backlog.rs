//! The backlog scenario: enqueue `--backlog` messages, then drain them in a child process
//! (this binary re-executed with the hidden [`CHILD_COMMAND`]) so the consumer's peak RSS —
//! `VmHWM` in `/proc/<pid>/status`, read by the parent while the child waits — does not
//! include the producer's memory.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::baseline;
use crate::opts::{BenchOpts, TransportKind};
use crate::report::{Row, RunResult};
use crate::scenario::STALL;
use crate::system::{Locator, Setup};
use crate::tracker::Tracker;

/// The hidden subcommand a binary must route to [`drain_child`] for the backlog scenario.
pub const CHILD_COMMAND: &str = "bench-drain";

/// Marks the child's result line on its stdout.
const RESULT_PREFIX: &str = "TIDINGS-BENCH-DRAIN ";

/// Messages per send while enqueueing.
const ENQUEUE_BATCH: u64 = 1_000;

/// Arguments of the hidden drain subcommand.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// Where the queue is (JSON [`Locator`]).
    #[arg(long)]
    pub locator: String,
    /// Messages to drain.
    #[arg(long)]
    pub n: u64,
    /// Consumer prefetch.
    #[arg(long, default_value_t = 256)]
    pub prefetch: usize,
    /// Tidings on SQLite: with the inbox.
    #[arg(long)]
    pub inbox: bool,
}

/// What the child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DrainResult {
    elapsed_s: f64,
    violation: Option<String>,
}

/// The child: attaches a consumer to the queue, takes all `n`, prints the result, then
/// waits for stdin to close (so the parent can read its peak RSS) and returns.
pub async fn drain_child(args: DrainArgs) -> anyhow::Result<()> {
    let locator: Locator = serde_json::from_str(&args.locator)?;
    let kind = locator
        .kind
        .ok_or_else(|| anyhow::anyhow!("locator without a transport"))?;
    let tracker = Arc::new(Tracker::new(args.n)?);
    let setup = Setup {
        size: 0,
        prefetch: args.prefetch,
        fanout: locator.queues.len(),
        trackers: vec![tracker.clone()],
        attach: Some(locator.clone()),
        inbox: args.inbox,
    };
    let start = Instant::now();
    let sys = baseline::open(kind, locator.raw, &locator.url, &setup).await?;
    let waited = tracker.wait(STALL).await;
    let elapsed_s = start.elapsed().as_secs_f64();
    sys.finish(false).await?;
    let violation = match waited {
        Ok(_) => tracker.tally().violation(),
        Err(e) => Some(format!("{e:#}")),
    };
    let result = DrainResult {
        elapsed_s,
        violation,
    };
    println!("{RESULT_PREFIX}{}", serde_json::to_string(&result)?);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::io::stdin().read_to_end(&mut rest),
    )
    .await;
    Ok(())
}

/// Peak resident set of process `pid`, in bytes.
fn vm_hwm(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("unreadable VmHWM line `{line}`"))?
        .parse()?;
    Ok(kb * 1024)
}

async fn run_child(
    locator: &Locator,
    n: u64,
    prefetch: usize,
    inbox: bool,
) -> anyhow::Result<(f64, u64)> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg(CHILD_COMMAND);
    if inbox {
        cmd.arg("--inbox");
    }
    let mut child = cmd
        .arg("--locator")
        .arg(serde_json::to_string(locator)?)
        .arg("--n")
        .arg(n.to_string())
        .arg("--prefetch")
        .arg(prefetch.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("drain child exited at once"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout from the drain child"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut result = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
            result = Some(serde_json::from_str::<DrainResult>(json)?);
            break;
        }
    }
    let hwm = vm_hwm(pid);
    drop(child.stdin.take());
    let status = child.wait().await?;
    let result = result.ok_or_else(|| {
        anyhow::anyhow!(
            "the drain child ({CHILD_COMMAND}) printed no result and exited with {status}: \
             does this binary route `{CHILD_COMMAND}` to tidings_bench::drain_child?"
        )
    })?;
    if let Some(v) = result.violation {
        anyhow::bail!("exactly-once violated while draining the backlog: {v}");
    }
    Ok((result.elapsed_s, hwm?))
}

/// Enqueue, then drain in a child; one run.
async fn run(kind: TransportKind, raw: bool, opts: &BenchOpts) -> anyhow::Result<Row> {
    let n = opts.backlog;
    let mut row = Row::new("backlog", kind, raw, n);
    let setup = Setup {
        size: opts.size,
        prefetch: opts.prefetch,
        fanout: 1,
        trackers: Vec::new(),
        attach: None,
        inbox: !opts.no_inbox,
    };
    let sys = baseline::open(kind, raw, baseline::url(kind, opts), &setup).await?;
    let outcome = async {
        let start = Instant::now();
        let chunk = ENQUEUE_BATCH.max(sys.batch_hint() as u64);
        let mut seq = 0;
        while seq < n {
            let end = n.min(seq + chunk);
            sys.send((seq..end).map(|i| (i, 0)).collect()).await?;
            seq = end;
        }
        let enqueue_s = start.elapsed().as_secs_f64();
        let (drain_s, hwm) = run_child(&sys.locator(), n, opts.prefetch, !opts.no_inbox).await?;
        anyhow::Ok((enqueue_s, drain_s, hwm))
    }
    .await;
    let finished = crate::scenario::finish(sys).await;
    let (enqueue_s, drain_s, hwm) = outcome?;
    finished?;
    row.enqueue_msgs_per_sec = Some(n as f64 / enqueue_s.max(1e-9));
    row.peak_rss_mb = Some(hwm as f64 / (1024.0 * 1024.0));
    row.runs.push(RunResult {
        msgs_per_sec: n as f64 / drain_s.max(1e-9),
        elapsed_s: drain_s,
        send_s: enqueue_s,
        p50_us: 0,
        p99_us: 0,
        max_us: 0,
    });
    Ok(row)
}

/// The backlog row of Tidings or the baseline on `kind`.
pub async fn measure(kind: TransportKind, raw: bool, opts: &BenchOpts) -> Row {
    if kind == TransportKind::Memory {
        let mut row = Row::new("backlog", kind, raw, opts.backlog);
        row.skipped = Some("in-process: a child process cannot drain it".into());
        return row;
    }
    match run(kind, raw, opts).await {
        Ok(row) => {
            eprintln!(
                "  {:<28} backlog {}: enqueue {:.0} msg/s, drain {:.0} msg/s, consumer peak RSS {:.1} MB",
                row.system,
                opts.backlog,
                row.enqueue_msgs_per_sec.unwrap_or(0.0),
                row.runs.first().map_or(0.0, |r| r.msgs_per_sec),
                row.peak_rss_mb.unwrap_or(0.0)
            );
            row
        }
        Err(e) => {
            let mut row = Row::new("backlog", kind, raw, opts.backlog);
            eprintln!("  {} backlog: FAILED: {e:#}", row.system);
            row.error = Some(format!("{e:#}"));
            row
        }
    }
}
