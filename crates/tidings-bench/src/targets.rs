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
    let ra = find(rows, "saturated", a.0, a.1).and_then(Row::rate);
    let rb = find(rows, "saturated", b.0, b.1).and_then(Row::rate);
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
    out
}
