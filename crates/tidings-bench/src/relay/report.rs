//! The relay rows in the report: their markdown table (rate, min–max, ratio to the raw
//! publish rate of the same broker, the untimed fill rate) and the target "relay ≥ the
//! broker's raw publish rate" for each relay to a broker.

use crate::opts::TransportKind;
use crate::report::{Row, Target};

use super::SCENARIO;

fn x(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{r:.2}×"))
}

/// The markdown table of the relay rows.
pub(crate) fn table(rows: &[&Row]) -> String {
    let mut s = String::from(
        "| system | durability | msg/s (median) | min–max | vs raw publish | outbox fill msg/s (untimed) |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for r in rows {
        if let Some(why) = &r.skipped {
            s += &format!(
                "| {} | {} | skipped: {why} | | | |\n",
                r.system, r.durability
            );
            continue;
        }
        if let Some(e) = &r.error {
            s += &format!("| {} | {} | FAILED: {e} | | | |\n", r.system, r.durability);
            continue;
        }
        let rates = r.runs.iter().map(|x| x.msgs_per_sec);
        let lo = rates.clone().reduce(f64::min).unwrap_or(0.0);
        let hi = rates.reduce(f64::max).unwrap_or(0.0);
        s += &format!(
            "| {} | {} | {:.0} | {lo:.0}–{hi:.0} | {} | {} |\n",
            r.system,
            r.durability,
            r.rate().unwrap_or(0.0),
            if r.raw {
                "(baseline)".into()
            } else {
                x(r.vs_baseline)
            },
            r.enqueue_msgs_per_sec
                .map_or_else(|| "–".into(), |f| format!("{f:.0}")),
        );
    }
    s
}

/// One target per relay row that ran: its rate at least its broker's raw publish rate.
pub(crate) fn targets(rows: &[Row]) -> Vec<Target> {
    rows.iter()
        .filter(|r| {
            r.scenario == SCENARIO
                && r.system.starts_with("relay ")
                && r.transport != TransportKind::Memory
                && r.skipped.is_none()
        })
        .map(|r| {
            let target = format!("Outbox {} ≥ raw publish {}", r.system, r.transport);
            match (r.error.is_none().then(|| r.rate()).flatten(), r.vs_baseline) {
                (Some(rate), Some(ratio)) => Target {
                    target,
                    status: if ratio >= 1.0 { "met" } else { "missed" }.into(),
                    measured: format!("{rate:.0} msg/s = {ratio:.2}× raw publish"),
                },
                _ => Target {
                    target,
                    status: "not measured".into(),
                    measured: "a row is missing or failed".into(),
                },
            }
        })
        .collect()
}
