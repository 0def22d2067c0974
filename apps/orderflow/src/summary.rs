//! The printed report of a load run.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::load::LoadResult;
use crate::report::{self, Check, Scope, Stage};
use crate::system::System;

/// Everything the report shows.
#[derive(Debug)]
pub struct Summary {
    /// Orders placed (202).
    pub placed: usize,
    /// Failed requests.
    pub http_errors: u64,
    /// Repeated requests and how many broke idempotency.
    pub repeats: (u64, u64),
    /// Whether everything settled in time.
    pub settled: bool,
    /// Completed orders.
    pub completed: i64,
    /// Cancelled orders by reason.
    pub cancelled: BTreeMap<String, i64>,
    /// Dead letters by (queue, reason).
    pub dead_letters: BTreeMap<(String, String), u64>,
    /// Seconds from the first order placed to the last one final.
    pub span_secs: f64,
    /// Seconds to place all orders.
    pub placing_secs: f64,
    /// Latency per stage.
    pub stages: Vec<Stage>,
    /// The invariants.
    pub checks: Vec<Check>,
    /// Transport name.
    pub transport: &'static str,
}

impl Summary {
    /// Collects the numbers of a finished run.
    pub async fn gather(
        system: &System,
        scope: Scope,
        load: &LoadResult,
        settled: bool,
        checks: &[Check],
    ) -> anyhow::Result<Summary> {
        let (completed, cancelled) = report::outcomes(&system.db, scope).await?;
        let dead_letters = report::error_queue(
            system.bus.transport().as_ref(),
            chrono::DateTime::from_timestamp_micros(scope.since_micros),
        )
        .await?;
        let (first, last): (Option<i64>, Option<i64>) = system
            .db
            .read
            .one(
                "SELECT MIN(v.placed_at), MAX(v.final_at) FROM api_orders o JOIN view_orders v ON v.order_id = o.order_id WHERE o.placed_at >= ?1",
                crate::args![scope.since_micros],
            )
            .await?;
        let span_secs = match (first, last) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e6,
            _ => 0.0,
        };
        let mut stages = vec![report::stage("POST /orders (client)", &load.post_latency)];
        stages.extend(report::stages(&system.db, scope).await?);
        Ok(Summary {
            placed: load.placed.len(),
            http_errors: load.errors,
            repeats: (load.repeats, load.idempotency_violations),
            settled,
            completed,
            cancelled,
            dead_letters,
            span_secs,
            placing_secs: load.elapsed.as_secs_f64(),
            stages,
            checks: checks.to_vec(),
            transport: system.bus.transport().name(),
        })
    }

    /// The report as text.
    pub fn render(&self, url: &str) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "\n=== OrderFlow report ===");
        let _ = writeln!(o, "orders placed         {} ({} HTTP errors; {} repeated with the same Idempotency-Key, {} answered with another order)",
            self.placed, self.http_errors, self.repeats.0, self.repeats.1);
        let _ = writeln!(o, "completed             {}", self.completed);
        let cancelled: i64 = self.cancelled.values().sum();
        let _ = writeln!(o, "cancelled             {cancelled}");
        for (reason, n) in &self.cancelled {
            let _ = writeln!(o, "  {reason:<20} {n}");
        }
        let dl: u64 = self.dead_letters.values().sum();
        let _ = writeln!(o, "in the error queues   {dl}");
        for ((queue, reason), n) in &self.dead_letters {
            let _ = writeln!(o, "  {queue}_error  {reason:<18} {n}");
        }
        if !self.settled {
            let _ = writeln!(
                o,
                "WARNING: not every order became final before the deadline"
            );
        }
        let rate = if self.span_secs > 0.0 {
            self.placed as f64 / self.span_secs
        } else {
            0.0
        };
        let _ = writeln!(o, "throughput            {rate:.0} orders/s end to end ({} orders, first placed -> last final in {:.1} s; placing took {:.1} s)",
            self.placed, self.span_secs, self.placing_secs);
        let _ = writeln!(
            o,
            "latency per stage           count      p50 ms      p99 ms"
        );
        for s in &self.stages {
            let _ = writeln!(
                o,
                "  {:<32} {:>6} {:>10.1} {:>11.1}",
                s.name, s.count, s.p50_ms, s.p99_ms
            );
        }
        let _ = writeln!(o, "invariants");
        for c in &self.checks {
            let _ = writeln!(
                o,
                "  [{}] {} — {}",
                if c.ok { "ok" } else { "FAILED" },
                c.name,
                c.detail
            );
        }
        if self.transport == "memory" {
            let _ = writeln!(o, "error queue: this run used the in-memory transport, so its error queues live in this process only;");
            let _ = writeln!(o, "  on the SQLite transport inspect and replay them with:");
        } else {
            let _ = writeln!(o, "inspect and replay the error queues:");
        }
        let _ = writeln!(
            o,
            "  (tidings = `cargo run --release -p tidings-cli --`, or `cargo install --path crates/tidings-cli`)"
        );
        let _ = writeln!(o, "  tidings dlq list   --url {url}");
        let _ = writeln!(o, "  tidings dlq show   --url {url} <message-id>");
        let _ = writeln!(
            o,
            "  tidings dlq replay --url {url} --endpoint inventory --reason handler-failed"
        );
        let _ = writeln!(
            o,
            "  tidings dlq purge  --url {url} --endpoint inventory --reason undeserializable"
        );
        o
    }
}
