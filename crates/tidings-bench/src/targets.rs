//! The project's performance targets, evaluated on one report's rows (ratios within the
//! same run).

use crate::opts::TransportKind as K;
use crate::report::{Row, Target};

fn find<'a>(rows: &'a [Row], scenario: &str, kind: K, raw: bool) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.scenario == scenario && r.transport == kind && r.raw == raw && r.error.is_none()
    })
}

fn target(name: &str, met: Option<bool>, measured: String) -> Target {
    Target {
        target: name.to_string(),
        status: match met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "not measured",
        }
        .to_string(),
        measured,
    }
}

fn rate_ratio(rows: &[Row], a: (K, bool), b: (K, bool), at_least: f64, name: &str) -> Target {
    scenario_ratio(rows, "saturated", a, b, at_least, name)
}

fn scenario_ratio(
    rows: &[Row],
    scenario: &str,
    a: (K, bool),
    b: (K, bool),
    at_least: f64,
    name: &str,
) -> Target {
    let ra = find(rows, scenario, a.0, a.1).and_then(Row::rate);
    let rb = find(rows, scenario, b.0, b.1).and_then(Row::rate);
    match (ra, rb) {
        (Some(x), Some(y)) if y > 0.0 => target(
            name,
            Some(x / y >= at_least),
            format!("{x:.0} vs {y:.0} msg/s = {:.2}×", x / y),
        ),
        _ => target(name, None, "a row is missing".into()),
    }
}

/// Every target, met, missed or not measured.
pub(crate) fn evaluate(rows: &[Row]) -> Vec<Target> {
    let sq = (K::Sqlite, false);
    let mut out = vec![
        rate_ratio(
            rows,
            sq,
            (K::Rabbitmq, true),
            10.0,
            "Tidings SQLite (fsync, inbox) saturated ≥ 10× raw RabbitMQ",
        ),
        rate_ratio(
            rows,
            sq,
            (K::Nats, true),
            1.5,
            "Tidings SQLite (fsync, inbox) saturated ≥ 1.5× raw NATS",
        ),
    ];
    let p = find(rows, "paced 5000 msg/s", K::Sqlite, false).and_then(Row::p99);
    out.push(match p {
        Some(us) => target(
            "Tidings SQLite paced 5,000 msg/s p99 ≤ 1 ms",
            Some(us <= 1000.0),
            format!("p99 {:.3} ms", us / 1000.0),
        ),
        None => target(
            "Tidings SQLite paced 5,000 msg/s p99 ≤ 1 ms",
            None,
            "no row".into(),
        ),
    });
    for k in [K::Postgres, K::Rabbitmq, K::Nats] {
        out.push(rate_ratio(
            rows,
            (k, false),
            (k, true),
            0.9,
            &format!("Tidings {k} saturated within 10 % of its raw baseline"),
        ));
    }
    out.push(rate_ratio(
        rows,
        (K::Postgres, false),
        (K::Postgres, true),
        2.0,
        "Tidings PostgreSQL saturated ≥ 2× raw SKIP LOCKED",
    ));
    for k in [K::Sqlite, K::Postgres, K::Rabbitmq, K::Nats] {
        let name = format!("Tidings {k}: backlog drained with consumer RSS ≤ 100 MB");
        out.push(match find(rows, "backlog", k, false) {
            Some(r) => {
                let rss = r.peak_rss_mb.unwrap_or(f64::MAX);
                // Only a backlog of a million counts.
                let met = (r.n >= 1_000_000).then_some(rss <= 100.0);
                target(
                    &name,
                    met,
                    format!("{} drained, peak RSS {rss:.1} MiB", r.n),
                )
            }
            None => target(&name, None, "no row".into()),
        });
    }
    out.extend(crate::relay::targets(rows));
    out.extend(embedded_targets(rows));
    out
}

fn p99_at_most(rows: &[Row], rate: u64, ms: f64) -> Target {
    let name = format!("(#13) Tidings SQLite paced {rate} msg/s p99 ≤ {ms} ms");
    match find(rows, &format!("paced {rate} msg/s"), K::Sqlite, false).and_then(Row::p99) {
        Some(us) => target(
            &name,
            Some(us <= ms * 1000.0),
            format!("p99 {:.3} ms", us / 1000.0),
        ),
        None => target(&name, None, "no row".into()),
    }
}

/// Issue #13's targets for the embedded default and the core pipeline.
fn embedded_targets(rows: &[Row]) -> Vec<Target> {
    let sq = (K::Sqlite, false);
    let mut out = vec![
        rate_ratio(
            rows,
            sq,
            (K::Sqlite, true),
            0.5,
            "(#13) Tidings SQLite (fsync, inbox) saturated ≥ 0.5× raw SQLite",
        ),
        rate_ratio(
            rows,
            sq,
            (K::Rabbitmq, true),
            2.5,
            "(#13) Tidings SQLite (fsync, inbox) saturated ≥ 2.5× raw RabbitMQ",
        ),
        p99_at_most(rows, 5000, 10.0),
        p99_at_most(rows, 1000, 5.0),
        scenario_ratio(
            rows,
            "fan-out 1→3",
            sq,
            (K::Sqlite, true),
            0.5,
            "(#13) Tidings SQLite fan-out 1→3 ≥ 0.5× raw SQLite",
        ),
    ];
    let name = "(#13) Tidings SQLite: 1,000,000 backlog drained ≥ 0.5× raw, RSS ≤ 100 MB";
    let backlog = |raw| find(rows, "backlog", K::Sqlite, raw);
    out.push(match (backlog(false), backlog(true)) {
        (Some(t), Some(r)) => match (t.rate(), r.rate()) {
            (Some(x), Some(y)) if y > 0.0 => {
                let rss = t.peak_rss_mb.unwrap_or(f64::MAX);
                let met = (t.n >= 1_000_000).then_some(x / y >= 0.5 && rss <= 100.0);
                target(
                    name,
                    met,
                    format!(
                        "{} drained: {x:.0} vs {y:.0} msg/s = {:.2}×, peak RSS {rss:.1} MiB",
                        t.n,
                        x / y
                    ),
                )
            }
            _ => target(name, None, "a rate is missing".into()),
        },
        _ => target(name, None, "a row is missing".into()),
    });
    let name = "(#13) Tidings memory saturated ≥ 300,000 msg/s";
    out.push(
        match find(rows, "saturated", K::Memory, false).and_then(Row::rate) {
            Some(x) => target(name, Some(x >= 300_000.0), format!("{x:.0} msg/s")),
            None => target(name, None, "no row".into()),
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunResult;

    fn row(scenario: &str, kind: K, raw: bool, rate: f64, p99_us: u64) -> Row {
        let mut r = Row::new(scenario, kind, raw, 1_000_000);
        r.runs.push(RunResult {
            msgs_per_sec: rate,
            elapsed_s: 1.0,
            send_s: 1.0,
            p50_us: 1,
            p99_us,
            max_us: p99_us,
        });
        r
    }

    fn status<'a>(targets: &'a [Target], prefix: &str) -> &'a str {
        let t = targets.iter().find(|t| t.target.starts_with(prefix));
        t.map_or("absent", |t| t.status.as_str())
    }

    #[test]
    fn issue_13_targets_are_judged_from_one_report() {
        let mut backlog = row("backlog", K::Sqlite, false, 40_000.0, 0);
        backlog.peak_rss_mb = Some(120.0);
        let rows = vec![
            row("saturated", K::Sqlite, false, 20_000.0, 0),
            row("saturated", K::Sqlite, true, 30_000.0, 0),
            row("saturated", K::Rabbitmq, true, 10_000.0, 0),
            row("saturated", K::Memory, false, 310_000.0, 0),
            row("paced 5000 msg/s", K::Sqlite, false, 5_000.0, 9_000),
            row("paced 1000 msg/s", K::Sqlite, false, 1_000.0, 6_000),
            backlog,
            row("backlog", K::Sqlite, true, 60_000.0, 0),
        ];
        let t = evaluate(&rows);
        assert_eq!(
            status(&t, "(#13) Tidings SQLite (fsync, inbox) saturated ≥ 0.5×"),
            "met"
        );
        assert_eq!(
            status(&t, "(#13) Tidings SQLite (fsync, inbox) saturated ≥ 2.5×"),
            "missed"
        );
        assert_eq!(status(&t, "(#13) Tidings SQLite paced 5000"), "met");
        assert_eq!(status(&t, "(#13) Tidings SQLite paced 1000"), "missed");
        assert_eq!(status(&t, "(#13) Tidings SQLite fan-out"), "not measured");
        // 0.67× raw but 120 MiB: missed on memory.
        assert_eq!(
            status(&t, "(#13) Tidings SQLite: 1,000,000 backlog"),
            "missed"
        );
        assert_eq!(status(&t, "(#13) Tidings memory"), "met");
    }
}
