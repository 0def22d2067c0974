//! The point-to-point scenarios — saturated, paced, fan-out — for one system: `runs` fresh
//! runs, each checked for exactly-once, measured as N / (first send → last ack) and as
//! latency percentiles.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::baseline;
use crate::opts::{BenchOpts, TransportKind};
use crate::report::{Row, RunResult};
use crate::system::{drive, Setup};
use crate::tracker::Tracker;

/// How long a run may make no progress before it fails.
pub const STALL: Duration = Duration::from_secs(60);

/// Which point-to-point scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 1 producer, 1 consumer, as fast as it goes.
    Saturated,
    /// A fixed offered rate (msg/s).
    Paced(u64),
    /// 1 producer, 3 subscribers.
    Fanout,
}

impl Scenario {
    /// Label in the report.
    pub fn label(self) -> String {
        match self {
            Scenario::Saturated => "saturated".into(),
            Scenario::Paced(r) => format!("paced {r} msg/s"),
            Scenario::Fanout => "fan-out 1→3".into(),
        }
    }

    fn fanout(self) -> usize {
        if self == Scenario::Fanout {
            3
        } else {
            1
        }
    }

    /// Messages per run.
    pub fn n(self, opts: &BenchOpts) -> u64 {
        match self {
            Scenario::Paced(r) => ((r as f64 * opts.paced_secs).round() as u64).max(1),
            Scenario::Fanout => opts.fanout_n.unwrap_or(opts.n),
            Scenario::Saturated => opts.n,
        }
    }
}

/// One run: fresh system, drive, wait for every ack, check exactly-once, clean up.
async fn run_once(
    kind: TransportKind,
    raw: bool,
    opts: &BenchOpts,
    scenario: Scenario,
) -> anyhow::Result<RunResult> {
    let n = scenario.n(opts);
    let trackers: Vec<Arc<Tracker>> = (0..scenario.fanout())
        .map(|_| Tracker::new(n).map(Arc::new))
        .collect::<anyhow::Result<_>>()?;
    let setup = Setup {
        size: opts.size,
        prefetch: opts.prefetch,
        fanout: scenario.fanout(),
        trackers: trackers.clone(),
        attach: None,
        inbox: !opts.no_inbox,
    };
    let sys = baseline::open(kind, raw, baseline::url(kind, opts), &setup).await?;
    let rate = match scenario {
        Scenario::Paced(r) => Some(r),
        _ => None,
    };
    let outcome = async {
        let driven = drive(sys.as_ref(), n, rate, opts.window, STALL).await?;
        let mut last = driven.sent;
        for t in &trackers {
            last = last.max(t.wait(STALL).await?);
        }
        // Give a late duplicate a moment to show itself.
        tokio::time::sleep(Duration::from_millis(100)).await;
        anyhow::Ok((driven, last))
    }
    .await;
    let finished = finish(sys).await;
    let (driven, last) = outcome?;
    finished?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for (i, t) in trackers.iter().enumerate() {
        let tally = t.tally();
        if let Some(v) = tally.violation() {
            anyhow::bail!("exactly-once violated (consumer {i}): {v}");
        }
        hist.add(&tally.hist)?;
    }
    let elapsed = last.duration_since(driven.start).as_secs_f64();
    Ok(RunResult {
        msgs_per_sec: n as f64 / elapsed.max(1e-9),
        elapsed_s: elapsed,
        send_s: driven.sent.duration_since(driven.start).as_secs_f64(),
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
    })
}

/// Stops and cleans up `sys`, giving up after a minute.
pub async fn finish(sys: Box<dyn crate::system::System>) -> anyhow::Result<()> {
    match tokio::time::timeout(STALL, sys.finish(true)).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!(
            "stopping and cleaning up took more than {}s",
            STALL.as_secs()
        ),
    }
}

/// All runs of `scenario` on Tidings or the baseline of `kind`.
pub async fn measure(kind: TransportKind, raw: bool, opts: &BenchOpts, scenario: Scenario) -> Row {
    let mut row = Row::new(&scenario.label(), kind, raw, scenario.n(opts));
    for i in 0..opts.runs {
        match run_once(kind, raw, opts, scenario).await {
            Ok(r) => {
                eprintln!(
                    "  {:<28} {:<16} run {}/{}: {:>9.0} msg/s  p50 {:.3} ms  p99 {:.3} ms",
                    row.system,
                    row.scenario,
                    i + 1,
                    opts.runs,
                    r.msgs_per_sec,
                    r.p50_us as f64 / 1000.0,
                    r.p99_us as f64 / 1000.0
                );
                row.runs.push(r);
            }
            Err(e) => {
                eprintln!("  {} {}: FAILED: {e:#}", row.system, row.scenario);
                row.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    row
}
