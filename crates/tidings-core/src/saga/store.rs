//! [`SagaStore`]: runs one saga step as one transaction, and [`MemorySagaStore`], the
//! in-memory store for tests and single-process use.
//!
//! A store's [`SagaStore::step`] must, all or nothing:
//! 1. record the inbox row `(message id, endpoint)` of the message being handled — if it is
//!    there already the message is a duplicate: return [`StepOutcome::Duplicate`] without
//!    calling `decide`;
//! 2. load the saga's record (if any) and call `decide` with it (pure: no I/O);
//! 3. apply the [`Write`] with optimistic concurrency: an insert finds no row, an update or
//!    delete finds the version the step read — otherwise fail with
//!    [`Error::Conflict`] (the runner re-runs the step);
//! 4. enqueue [`Decision::outgoing`] in the same transaction (the transport's own tables,
//!    or an outbox table a relay ships), and commit.
//!
//! If `decide` fails, nothing is written.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::query::{SagaQueries, SagaQuery, SagaSummary};
use super::record::{Decision, SagaRecord, Write};
use crate::{ConsumeContext, Error, HandlerError};

/// The pure part of a step, run inside the store's transaction with the loaded record.
pub type Decide = Box<dyn FnOnce(Option<SagaRecord>) -> Result<Decision, HandlerError> + Send>;

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Committed (possibly writing nothing, if the message was ignored).
    Applied,
    /// The inbox already held this message for this endpoint: nothing done.
    Duplicate,
}

/// Persistence of saga instances; see the [module docs](self) for the contract.
#[async_trait]
pub trait SagaStore: Send + Sync + 'static {
    /// Runs one step of saga `saga`, instance `key`, for the message of `ctx` (inbox row
    /// `(ctx.message_id(), ctx.endpoint())`) as one transaction.
    async fn step(
        &self,
        saga: &str,
        key: &str,
        ctx: &ConsumeContext,
        decide: Decide,
    ) -> Result<StepOutcome, HandlerError>;
}

/// The conflict error of a write that found another version than the step read.
pub fn conflict(saga: &str, write: &Write, found: Option<i64>) -> Error {
    let (key, expected) = match write {
        Write::Nothing => (String::new(), None),
        Write::Insert(r) => (r.key.clone(), None),
        Write::Update(r) => (r.key.clone(), Some(r.version)),
        Write::Delete { key, expected } => (key.clone(), Some(*expected)),
    };
    Error::Conflict {
        saga: saga.to_string(),
        key,
        expected,
        found,
    }
}

/// Whether `e` is a [`Error::Conflict`] (the step is worth re-running at once).
pub fn is_conflict(e: &HandlerError) -> bool {
    e.source_error()
        .and_then(|s| s.downcast_ref::<Error>())
        .is_some_and(|e| matches!(e, Error::Conflict { .. }))
}

#[derive(Default)]
struct State {
    sagas: BTreeMap<(String, String), SagaRecord>,
    inbox: HashSet<(String, Uuid)>,
}

/// Sagas in memory (lost on restart). Steps run one at a time; the outgoing messages are
/// sent through the consumed message's producer before the state is stored (if the send
/// fails, nothing is stored).
#[derive(Clone, Default)]
pub struct MemorySagaStore {
    state: Arc<tokio::sync::Mutex<State>>,
}

impl std::fmt::Debug for MemorySagaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySagaStore").finish_non_exhaustive()
    }
}

impl MemorySagaStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bumps the version of a saga as another process saving it would (for tests of
    /// conflict handling); `false` if there is no such saga.
    pub async fn touch(&self, saga: &str, key: &str) -> bool {
        let mut st = self.state.lock().await;
        match st.sagas.get_mut(&(saga.to_string(), key.to_string())) {
            Some(r) => {
                r.version += 1;
                true
            }
            None => false,
        }
    }
}

fn apply(
    sagas: &mut BTreeMap<(String, String), SagaRecord>,
    saga: &str,
    write: Write,
) -> Result<(), Error> {
    let id = |key: &str| (saga.to_string(), key.to_string());
    let found = |sagas: &BTreeMap<_, SagaRecord>, key: &str| sagas.get(&id(key)).map(|r| r.version);
    match write {
        Write::Nothing => Ok(()),
        Write::Insert(mut r) => match found(sagas, &r.key) {
            None => {
                r.version = 1;
                sagas.insert(id(&r.key), r);
                Ok(())
            }
            f => Err(conflict(saga, &Write::Insert(r), f)),
        },
        Write::Update(mut r) => match found(sagas, &r.key) {
            Some(v) if v == r.version => {
                r.version += 1;
                r.updated_at = Utc::now();
                sagas.insert(id(&r.key), r);
                Ok(())
            }
            f => Err(conflict(saga, &Write::Update(r), f)),
        },
        Write::Delete { key, expected } => match found(sagas, &key) {
            Some(v) if v == expected => {
                sagas.remove(&id(&key));
                Ok(())
            }
            f => Err(conflict(saga, &Write::Delete { key, expected }, f)),
        },
    }
}

#[async_trait]
impl SagaStore for MemorySagaStore {
    async fn step(
        &self,
        saga: &str,
        key: &str,
        ctx: &ConsumeContext,
        decide: Decide,
    ) -> Result<StepOutcome, HandlerError> {
        let mut st = self.state.lock().await;
        let inbox = (ctx.endpoint().to_string(), ctx.message_id());
        if st.inbox.contains(&inbox) {
            return Ok(StepOutcome::Duplicate);
        }
        let found = st.sagas.get(&(saga.to_string(), key.to_string())).cloned();
        let decision = decide(found)?;
        // Check the write on a copy first, so a failed send leaves nothing behind.
        let mut next = st.sagas.clone();
        apply(&mut next, saga, decision.write)?;
        if !decision.outgoing.is_empty() {
            ctx.producer().send_raw(decision.outgoing).await?;
        }
        st.sagas = next;
        st.inbox.insert(inbox);
        Ok(StepOutcome::Applied)
    }
}

#[async_trait]
impl SagaQueries for MemorySagaStore {
    async fn list(&self, query: &SagaQuery) -> crate::Result<Vec<SagaSummary>> {
        let st = self.state.lock().await;
        let mut rows: Vec<&SagaRecord> = st.sagas.values().filter(|r| query.matches(r)).collect();
        rows.sort_by(|a, b| (a.updated_at, &a.saga, &a.key).cmp(&(b.updated_at, &b.saga, &b.key)));
        Ok(rows
            .into_iter()
            .skip(query.offset as usize)
            .take(query.limit())
            .map(SagaSummary::of)
            .collect())
    }

    async fn show(&self, saga: &str, key: &str) -> crate::Result<Option<SagaRecord>> {
        let st = self.state.lock().await;
        Ok(st.sagas.get(&(saga.to_string(), key.to_string())).cloned())
    }
}
