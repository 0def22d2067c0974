//! Wiring a saga into an [`Endpoint`]: one handler per message type that runs the step
//! through the store, re-running it on an optimistic-concurrency conflict.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::record::{Decision, SagaRecord, SagaStatus, Write};
use super::step::{Step, TIMEOUT_HEADER};
use super::store::{is_conflict, SagaStore, StepOutcome};
use super::{Completion, Install, KeyFn, Missing, OnFn, SagaState, StartFn};
use crate::{ConsumeContext, Endpoint, HandlerError, Message};

/// What every handler of one attached saga shares.
pub(crate) struct Core {
    pub(crate) name: String,
    pub(crate) completion: Completion,
    pub(crate) conflict_retries: u32,
    pub(crate) store: Arc<dyn SagaStore>,
}

impl Core {
    /// A completed saga past its retention window counts as missing.
    fn expired(&self, r: &SagaRecord, now: DateTime<Utc>) -> bool {
        match (r.status, r.completed_at, self.completion) {
            (SagaStatus::Completed, Some(at), Completion::KeepFor(d)) => {
                now - at >= chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
            }
            (SagaStatus::Completed, _, Completion::Remove) => true,
            _ => false,
        }
    }
}

/// How a message type acts on the saga.
pub(crate) enum Handle<S, M> {
    Start(StartFn<S, M>),
    On(OnFn<S, M>),
}

impl<S, M> Clone for Handle<S, M> {
    fn clone(&self) -> Self {
        match self {
            Handle::Start(f) => Handle::Start(f.clone()),
            Handle::On(f) => Handle::On(f.clone()),
        }
    }
}

/// The installer of `M`'s handler.
pub(crate) fn install<S: SagaState, M: Message>(key: KeyFn<M>, handle: Handle<S, M>) -> Install {
    Arc::new(move |ep: Endpoint, core: Arc<Core>, missing: Missing| {
        let (key, handle) = (key.clone(), handle.clone());
        ep.handle_fn(move |msg: M, ctx: ConsumeContext| {
            run(core.clone(), key.clone(), handle.clone(), missing, msg, ctx)
        })
    })
}

async fn run<S: SagaState, M: Message>(
    core: Arc<Core>,
    key: KeyFn<M>,
    handle: Handle<S, M>,
    missing: Missing,
    msg: M,
    ctx: ConsumeContext,
) -> Result<(), HandlerError> {
    let key = Arc::<str>::from(key(&msg));
    let msg = Arc::new(msg);
    let mut conflicts = 0;
    loop {
        let decide = {
            let (core, handle, msg, ctx, key) = (
                core.clone(),
                handle.clone(),
                msg.clone(),
                ctx.clone(),
                key.clone(),
            );
            Box::new(move |found: Option<SagaRecord>| {
                decide(&core, &handle, missing, &msg, &ctx, &key, found)
            })
        };
        match core.store.step(&core.name, &key, &ctx, decide).await {
            Ok(StepOutcome::Applied) => return Ok(()),
            Ok(StepOutcome::Duplicate) => {
                tracing::debug!(saga = %core.name, %key, "duplicate delivery: saga step skipped");
                return Ok(());
            }
            Err(e) if is_conflict(&e) && conflicts < core.conflict_retries => {
                conflicts += 1;
                tracing::debug!(saga = %core.name, %key, conflicts, "saga step conflicted; re-running");
                metrics::counter!(crate::telemetry::names::SAGA_CONFLICTS, "saga" => core.name.clone())
                    .increment(1);
            }
            Err(e) => return Err(e),
        }
    }
}

fn decide<S: SagaState, M: Message>(
    core: &Core,
    handle: &Handle<S, M>,
    missing: Missing,
    msg: &M,
    ctx: &ConsumeContext,
    key: &str,
    found: Option<SagaRecord>,
) -> Result<Decision, HandlerError> {
    let now = Utc::now();
    let is_timeout = ctx.envelope().header(TIMEOUT_HEADER) == Some(core.name.as_str());
    let found = found.filter(|r| !core.expired(r, now));
    let (name, id) = (&core.name, ctx.message_id());
    match (handle, found) {
        (_, None) if is_timeout => {
            tracing::debug!(saga = %name, %key, message_type = M::NAME, "timeout for a saga that is gone: dropped");
            Ok(Decision::nothing())
        }
        (Handle::Start(start), None) => {
            let mut step = Step::new(name, key, ctx, Vec::new());
            let state = start(msg, &mut step)?;
            finish(core, None, state, step, id, now)
        }
        (Handle::On(_), None) => match missing {
            Missing::Ignore => {
                tracing::debug!(saga = %name, %key, message_type = M::NAME, "no saga: message ignored");
                Ok(Decision::nothing())
            }
            Missing::Error => Err(HandlerError::permanent(format!(
                "no saga `{name}` with key `{key}` for {}",
                M::NAME
            ))),
        },
        (Handle::Start(_), Some(_)) => {
            tracing::debug!(saga = %name, %key, message_type = M::NAME, "saga already started: ignored");
            Ok(Decision::nothing())
        }
        (Handle::On(_), Some(r)) if is_timeout && !r.timeouts.contains(&id) => {
            tracing::debug!(saga = %name, %key, state = %r.state, message_type = M::NAME, "stale timeout dropped");
            Ok(Decision::nothing())
        }
        (Handle::On(on), Some(r)) => {
            let state: S = serde_json::from_value(r.data.clone()).map_err(|e| {
                HandlerError::permanent(format!("saga `{name}` key `{key}`: stored state: {e}"))
            })?;
            let mut step = Step::new(name, key, ctx, r.compensations.clone());
            let next = on(state, msg, &mut step)?;
            finish(core, Some(r), next, step, id, now)
        }
    }
}

/// The write and messages of a step that produced `next`.
fn finish<S: SagaState>(
    core: &Core,
    prev: Option<SagaRecord>,
    next: S,
    step: Step<'_>,
    handled: Uuid,
    now: DateTime<Utc>,
) -> Result<Decision, HandlerError> {
    let state = next.name().to_string();
    let data = serde_json::to_value(&next)
        .map_err(|e| HandlerError::permanent(format!("saga `{}`: state: {e}", core.name)))?;
    // Armed timeouts survive while the saga stays in the same state.
    let mut timeouts: Vec<Uuid> = match &prev {
        Some(r) if r.state == state && !step.cancel_timeouts => r
            .timeouts
            .iter()
            .copied()
            .filter(|t| *t != handled)
            .collect(),
        _ => Vec::new(),
    };
    timeouts.extend(step.new_timeouts.iter().copied());
    let remove = step.completed && core.completion == Completion::Remove;
    let completed_at = match &prev {
        Some(r) if r.completed_at.is_some() => r.completed_at,
        _ => step.completed.then_some(now),
    };
    let record = SagaRecord {
        saga: core.name.clone(),
        key: step.key().to_string(),
        state,
        data,
        version: prev.as_ref().map_or(0, |r| r.version),
        status: if completed_at.is_some() {
            SagaStatus::Completed
        } else {
            SagaStatus::Active
        },
        created_at: prev.as_ref().map_or(now, |r| r.created_at),
        updated_at: now,
        completed_at,
        compensations: step.compensations,
        timeouts,
    };
    let write = match (prev, remove) {
        (None, true) => Write::Nothing,
        (None, false) => Write::Insert(record),
        (Some(r), true) => Write::Delete {
            key: r.key,
            expected: r.version,
        },
        (Some(_), false) => Write::Update(record),
    };
    Ok(Decision {
        write,
        outgoing: step.outgoing,
    })
}
