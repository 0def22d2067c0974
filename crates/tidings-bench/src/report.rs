//! The [`Report`]: rows (median and min–max over runs), ratios of each Tidings row to its
//! baseline and to raw RabbitMQ, machine and service info, the targets met or missed, and
//! its markdown form.

use serde::Serialize;

use crate::baseline;
use crate::opts::{BenchOpts, TransportKind};

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// N / (first send → last ack); for the backlog, N / drain time.
    pub msgs_per_sec: f64,
    /// First send → last ack, seconds (backlog: the drain).
    pub elapsed_s: f64,
    /// First send → last send accepted, seconds (backlog: the enqueue).
    pub send_s: f64,
    /// Latency percentiles, µs (0 where not measured).
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Maximum, µs.
    pub max_us: u64,
}

/// One system in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario label.
    pub scenario: String,
    /// Transport.
    pub transport: TransportKind,
    /// Raw baseline (`true`) or Tidings.
    pub raw: bool,
    /// What ran.
    pub system: String,
    /// What an acknowledged send survives.
    pub durability: String,
    /// Messages per run.
    pub n: u64,
    /// The runs that completed.
    pub runs: Vec<RunResult>,
    /// Why it did not run.
    pub skipped: Option<String>,
    /// Why it failed (exactly-once violations included).
    pub error: Option<String>,
    /// Backlog: enqueue rate.
    pub enqueue_msgs_per_sec: Option<f64>,
    /// Backlog: the draining consumer's peak RSS (VmHWM), MiB.
    pub peak_rss_mb: Option<f64>,
    /// Tidings rows: median msg/s over the baseline's (paced: p99 over the baseline's p99).
    pub vs_baseline: Option<f64>,
    /// Tidings rows: median msg/s over raw RabbitMQ's in the same scenario.
    pub vs_raw_rabbitmq: Option<f64>,
}

impl Row {
    /// An empty row.
    pub fn new(scenario: &str, transport: TransportKind, raw: bool, n: u64) -> Self {
        Row {
            scenario: scenario.to_string(),
            transport,
            raw,
            system: baseline::name(transport, raw).to_string(),
            durability: baseline::durability(transport).to_string(),
            n,
            runs: Vec::new(),
            skipped: None,
            error: None,
            enqueue_msgs_per_sec: None,
            peak_rss_mb: None,
            vs_baseline: None,
            vs_raw_rabbitmq: None,
        }
    }

    /// Median msg/s.
    pub fn rate(&self) -> Option<f64> {
        median(self.runs.iter().map(|r| r.msgs_per_sec).collect())
    }

    /// Median p99, µs.
    pub fn p99(&self) -> Option<f64> {
        median(self.runs.iter().map(|r| r.p99_us as f64).collect())
    }

    fn minmax(&self, f: impl Fn(&RunResult) -> f64) -> Option<(f64, f64)> {
        let v: Vec<f64> = self.runs.iter().map(f).collect();
        let min = v.iter().copied().reduce(f64::min)?;
        let max = v.iter().copied().reduce(f64::max)?;
        Some((min, max))
    }
}

/// The median (mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

/// Where it ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// Logical cores.
    pub cores: usize,
    /// CPU model.
    pub cpu: String,
    /// Memory, MiB.
    pub memory_mb: u64,
    /// Kernel (`/proc/version`).
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Service versions and settings.
    pub services: Vec<String>,
}

/// A target and whether it was met.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What was asked.
    pub target: String,
    /// `met`, `missed` or `not measured`.
    pub status: String,
    /// The measured figures.
    pub measured: String,
}

/// Everything `tidings bench` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The options in force.
    pub opts: BenchOpts,
    /// When it ran (RFC 3339).
    pub started_at: String,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Machine and services.
    pub machine: Machine,
    /// Rows, in run order.
    pub rows: Vec<Row>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Failures (exactly-once violations, errors): non-empty means the bench failed.
    pub failures: Vec<String>,
}

impl Report {
    /// Fills the ratio columns and the failures list.
    pub fn finish(&mut self) {
        let find = |rows: &[Row], scenario: &str, kind: TransportKind, raw: bool| {
            rows.iter()
                .find(|r| r.scenario == scenario && r.transport == kind && r.raw == raw)
                .cloned()
        };
        let snapshot = self.rows.clone();
        for row in self.rows.iter_mut().filter(|r| !r.raw) {
            let paced = row.scenario.starts_with("paced");
            if let Some(b) = find(&snapshot, &row.scenario, row.transport, true) {
                row.vs_baseline = if paced {
                    ratio(row.p99(), b.p99())
                } else {
                    ratio(row.rate(), b.rate())
                };
            }
            if !paced {
                if let Some(b) = find(&snapshot, &row.scenario, TransportKind::Rabbitmq, true) {
                    row.vs_raw_rabbitmq = ratio(row.rate(), b.rate());
                }
            }
        }
        self.failures = self
            .rows
            .iter()
            .filter_map(|r| {
                r.error
                    .as_ref()
                    .map(|e| format!("{} / {}: {e}", r.system, r.scenario))
            })
            .collect();
        self.targets = crate::targets::evaluate(&self.rows);
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

fn x(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

fn status(r: &Row) -> Option<String> {
    if let Some(s) = &r.skipped {
        return Some(format!("skipped: {s}"));
    }
    r.error.as_ref().map(|e| format!("FAILED: {e}"))
}

/// The report as markdown.
pub fn markdown(rep: &Report, command: &str) -> String {
    let mut s = String::new();
    let o = &rep.opts;
    let m = &rep.machine;
    s += &format!(
        "Command: `{command}`  \nStarted {} — wall time {:.0} s\n\n",
        rep.started_at, rep.wall_s
    );
    s += &format!(
        "Machine: {} cores ({}), {} MiB RAM; kernel: {}; {}\n\n",
        m.cores, m.cpu, m.memory_mb, m.kernel, m.rustc
    );
    for sv in &m.services {
        s += &format!("- {sv}\n");
    }
    s += &format!(
        "\nBody {} B; producer window {} messages in flight; prefetch {}; {} run(s) per row \
         (median, min–max); backlog: one run.\n",
        o.size, o.window, o.prefetch, o.runs
    );
    let scenarios: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for r in &rep.rows {
            if !v.contains(&r.scenario) {
                v.push(r.scenario.clone());
            }
        }
        v
    };
    for sc in scenarios {
        let rows: Vec<&Row> = rep.rows.iter().filter(|r| r.scenario == sc).collect();
        let n = rows.first().map_or(0, |r| r.n);
        s += &format!("\n### {sc} (N = {n})\n\n");
        if sc == crate::relay::SCENARIO {
            s += &format!("Batches of {}.\n\n", o.relay_batch);
        }
        if sc == crate::relay::SCENARIO {
            s += &crate::relay::table(&rows);
            continue;
        }
        if sc == "backlog" {
            s += "| system | durability | enqueue msg/s | drain msg/s | consumer peak RSS (MiB) | vs baseline | vs raw RabbitMQ |\n|---|---|---:|---:|---:|---:|---:|\n";
            for r in rows {
                if let Some(st) = status(r) {
                    s += &format!("| {} | {} | {st} | | | | |\n", r.system, r.durability);
                    continue;
                }
                s += &format!(
                    "| {} | {} | {:.0} | {:.0} | {:.1} | {} | {} |\n",
                    r.system,
                    r.durability,
                    r.enqueue_msgs_per_sec.unwrap_or(0.0),
                    r.rate().unwrap_or(0.0),
                    r.peak_rss_mb.unwrap_or(0.0),
                    x(r.vs_baseline),
                    x(r.vs_raw_rabbitmq)
                );
            }
            continue;
        }
        let paced = sc.starts_with("paced");
        s += &format!(
            "| system | durability | msg/s (median) | min–max | p50 ms | p99 ms (min–max) | max ms | {} | vs raw RabbitMQ |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
            if paced { "p99 vs baseline" } else { "vs baseline" }
        );
        for r in rows {
            if let Some(st) = status(r) {
                s += &format!("| {} | {} | {st} | | | | | | |\n", r.system, r.durability);
                continue;
            }
            let (lo, hi) = r.minmax(|x| x.msgs_per_sec).unwrap_or_default();
            let (p99lo, p99hi) = r.minmax(|x| x.p99_us as f64).unwrap_or_default();
            s += &format!(
                "| {} | {} | {:.0} | {lo:.0}–{hi:.0} | {} | {} ({}–{}) | {} | {} | {} |\n",
                r.system,
                r.durability,
                r.rate().unwrap_or(0.0),
                ms(median(r.runs.iter().map(|x| x.p50_us as f64).collect()).unwrap_or(0.0)),
                ms(r.p99().unwrap_or(0.0)),
                ms(p99lo),
                ms(p99hi),
                ms(median(r.runs.iter().map(|x| x.max_us as f64).collect()).unwrap_or(0.0)),
                x(r.vs_baseline),
                x(r.vs_raw_rabbitmq)
            );
        }
    }
    if !rep.targets.is_empty() {
        s += "\n### Targets\n\n| target | status | measured |\n|---|---|---|\n";
        for t in &rep.targets {
            s += &format!("| {} | {} | {} |\n", t.target, t.status, t.measured);
        }
    }
    if !rep.failures.is_empty() {
        s += "\n### FAILURES\n\n";
        for f in &rep.failures {
            s += &format!("- {f}\n");
        }
    }
    s
}
