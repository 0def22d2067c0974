//! How work was shared between replicas: each `orderflow serve --replica NAME` process
//! counts the deliveries it consumed per endpoint (a bus [`Observer`] in front of the
//! admin journal's) and writes the counts to `<data dir>/share/NAME-<pid>.json` every
//! [`FLUSH`]. A process killed with SIGKILL loses at most its last [`FLUSH`] of counts
//! (the messages themselves are redelivered and counted by whoever handles them again),
//! so the figures are a lower bound per incarnation, not an audit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_core::observe::{Observation, Observer, Outcome};
use tokio_util::sync::CancellationToken;

/// How often a process writes its counts.
pub const FLUSH: Duration = Duration::from_millis(250);

/// Counts consumed deliveries per endpoint, then hands the observation on.
pub struct Counting {
    inner: Arc<dyn Observer>,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl std::fmt::Debug for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counting").finish_non_exhaustive()
    }
}

impl Counting {
    /// Counts, then calls `inner`.
    pub fn new(inner: Arc<dyn Observer>) -> Arc<Self> {
        Arc::new(Counting {
            inner,
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    /// Consumed deliveries so far, per endpoint.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes the counts to `path` every [`FLUSH`] (write to a temporary file, then
    /// rename: a kill never leaves half a file) until `stop`, and once more then.
    pub fn flush_to(self: &Arc<Self>, path: PathBuf, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let done = tokio::select! {
                    _ = stop.cancelled() => true,
                    _ = tokio::time::sleep(FLUSH) => false,
                };
                if let Err(e) = write(&path, &me.snapshot()) {
                    tracing::warn!(error = %e, "cannot write the work-share counts");
                }
                if done {
                    return;
                }
            }
        });
    }
}

fn write(path: &Path, counts: &BTreeMap<String, u64>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(counts)?)?;
    std::fs::rename(&tmp, path)
}

impl Observer for Counting {
    fn observe(&self, observation: Observation) {
        if observation.outcome == Outcome::Consumed {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            *counts.entry(observation.endpoint.clone()).or_insert(0) += 1;
        }
        self.inner.observe(observation);
    }
}

/// The directory the counts go to.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("share")
}

/// One process incarnation's counts: (replica name, pid) → endpoint → consumed.
pub type Shares = BTreeMap<(String, u32), BTreeMap<String, u64>>;

/// Reads every incarnation's counts from `data_dir`.
pub fn read(data_dir: &Path) -> Shares {
    let mut out = Shares::new();
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let Some((replica, pid)) = stem.rsplit_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(text)) = (pid.parse::<u32>(), std::fs::read(e.path())) else {
            continue;
        };
        if let Ok(counts) = serde_json::from_slice::<BTreeMap<String, u64>>(&text) {
            out.insert((replica.to_string(), pid), counts);
        }
    }
    out
}

/// The table of the report: per endpoint, each replica's share (incarnations summed) and,
/// for a replica that started more than once, what each incarnation consumed (in pid
/// order; one that consumed nothing counts too) — on RabbitMQ a restarted replica of an
/// ordered endpoint stands by, so its second figure is 0.
pub fn render(shares: &Shares) -> String {
    // every incarnation of each replica that wrote its counts, idle ones included
    let mut pids: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (replica, pid) in shares.keys() {
        pids.entry(replica).or_default().push(*pid);
    }
    let endpoints: std::collections::BTreeSet<&str> = shares
        .values()
        .flat_map(|c| c.keys().map(String::as_str))
        .collect();
    let mut s = String::from("work shared between replicas (deliveries consumed, per process)\n");
    for endpoint in endpoints {
        // replica → consumed by each incarnation
        let mut replicas: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (replica, pids) in &pids {
            let each: Vec<u64> = pids
                .iter()
                .map(|pid| {
                    let counts = shares.get(&(replica.to_string(), *pid));
                    counts.and_then(|c| c.get(endpoint)).copied().unwrap_or(0)
                })
                .collect();
            if each.iter().any(|n| *n > 0) {
                replicas.insert(replica, each);
            }
        }
        let total: u64 = replicas.values().flatten().sum();
        let parts: Vec<String> = replicas
            .iter()
            .map(|(r, each)| {
                let n: u64 = each.iter().sum();
                let pct = if total > 0 {
                    100.0 * n as f64 / total as f64
                } else {
                    0.0
                };
                let again = if each.len() > 1 {
                    let each: Vec<String> = each.iter().map(u64::to_string).collect();
                    format!(", {} starts: {}", each.len(), each.join("+"))
                } else {
                    String::new()
                };
                format!("{r} {n} ({pct:.0}%{again})")
            })
            .collect();
        s.push_str(&format!(
            "  {endpoint:<14} {total:>7}  {}\n",
            parts.join("  ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_of_a_replica_are_summed() {
        let mut shares = Shares::new();
        let one = |n| BTreeMap::from([("payments".to_string(), n)]);
        shares.insert(("payments-1".into(), 10), one(30));
        shares.insert(("payments-1".into(), 11), one(20));
        shares.insert(("payments-2".into(), 12), one(50));
        // a restart of payments-2 that consumed nothing before the run ended
        shares.insert(("payments-2".into(), 13), BTreeMap::new());
        let table = render(&shares);
        assert!(table.contains("payments           100"), "{table}");
        assert!(
            table.contains("payments-1 50 (50%, 2 starts: 30+20)"),
            "{table}"
        );
        assert!(
            table.contains("payments-2 50 (50%, 2 starts: 50+0)"),
            "{table}"
        );
    }
}
