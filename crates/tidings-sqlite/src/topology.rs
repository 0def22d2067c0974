//! The writer's view of the topology — which queues exist, who subscribes to what — to
//! resolve destinations without a query per message, and the deferred enqueue of write
//! jobs: an [`Outbox`](crate::Outbox) used inside a
//! [`SqliteTransport::write`](crate::SqliteTransport::write) job resolves against that view
//! and hands its rows to the writer, which inserts the rows of all the batch's successful
//! jobs in one statement.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tidings_core::transport::Destination;

use crate::error::{Result, SqliteError};
use crate::raw::Raw;
use crate::store::{self, NewRow, Prepared};

/// Queues and subscriptions at one topology generation.
#[derive(Debug, Default)]
pub(crate) struct Topo {
    queues: HashSet<String>,
    subs: HashMap<String, Vec<String>>,
}

impl Topo {
    /// Rows for `msgs`, or an unknown-queue error (then nothing of `msgs` is sent).
    pub(crate) fn resolve(&self, msgs: &[Prepared]) -> Result<Vec<NewRow>> {
        for p in msgs {
            if let Destination::Queue(q) = &p.destination {
                if !self.queues.contains(q) {
                    return Err(SqliteError::UnknownQueue(q.clone()));
                }
            }
        }
        let mut rows = Vec::with_capacity(msgs.len());
        for p in msgs {
            match &p.destination {
                Destination::Queue(q) => store::fan_out(p, std::slice::from_ref(q), &mut rows),
                Destination::Topic => {
                    if let Some(t) = self.subs.get(&p.message_type) {
                        store::fan_out(p, t, &mut rows);
                    }
                }
            }
        }
        Ok(rows)
    }
}

/// [`Topo`], cached while `tidings_schema.topology_gen` stays the same (every declare, in
/// any process, bumps it).
#[derive(Default)]
pub(crate) struct TopologyCache {
    gen: Option<i64>,
    topo: Arc<Topo>,
}

impl TopologyCache {
    /// Forgets the cached generation (after a failed batch).
    pub(crate) fn invalidate(&mut self) {
        self.gen = None;
    }

    /// The current topology (reloaded if a declare bumped the generation).
    pub(crate) fn refresh(&mut self, raw: &Raw<'_>) -> Result<Arc<Topo>> {
        let gen = raw.topology_gen()?;
        if self.gen == Some(gen) {
            return Ok(self.topo.clone());
        }
        let (queues, subs) = raw.topology()?;
        self.topo = Arc::new(Topo {
            queues: queues.into_iter().collect(),
            subs,
        });
        self.gen = Some(gen);
        Ok(self.topo.clone())
    }
}

/// What a running write job's outbox writes to: the batch's topology and the job's rows.
#[derive(Clone)]
pub(crate) struct Deferred {
    pub(crate) topo: Arc<Topo>,
    pub(crate) rows: Arc<Mutex<Vec<NewRow>>>,
}

tokio::task_local! {
    /// Set while the writer runs a job's closure.
    pub(crate) static DEFERRED: Deferred;
}

/// Inside a write job: resolves `msgs` against the batch's topology and queues the rows
/// for the batch's insert (`Some`). Outside one: `None` (enqueue with SQL).
pub(crate) fn defer(msgs: &[Prepared]) -> Option<Result<()>> {
    DEFERRED
        .try_with(|d| {
            let rows = d.topo.resolve(msgs)?;
            if let Ok(mut all) = d.rows.lock() {
                all.extend(rows);
            }
            Ok(())
        })
        .ok()
}
