//! The receive loop of one endpoint: `concurrency` workers, each owning a clone of the
//! pipeline, take deliveries from the transport's receiver (prefetch ≤ N) one at a time,
//! run each through the pipeline while renewing its lease, and settle it — ack, delayed
//! redelivery, deferral, or dead letter with fault headers.
//!
//! Hot path, per delivery: no task spawn, no pipeline clone, no envelope copy. A
//! settlement that does not complete at once (an ack waiting for its fsync) is spawned, so
//! the worker takes the next delivery meanwhile; unsettled deliveries stay bounded by the
//! transport's prefetch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use crate::endpoint::EndpointSettings;
use crate::handler::HandlerError;
use crate::observe::{Observation, Observer, Outcome};
use crate::pipeline::inbox::InboxStore;
use crate::pipeline::{BoxPipeline, Consume};
use crate::telemetry::names;
use crate::transport::{Delivery, Receiver, Settle};
use crate::{ConsumeContext, Envelope, Fault, FaultReason, Producer};

/// Everything one endpoint's workers share.
pub(crate) struct EndpointRuntime {
    /// Shared by every delivery's context.
    pub(crate) name: Arc<str>,
    pub(crate) settings: EndpointSettings,
    pub(crate) producer: Producer,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// The endpoint's inbox: its pipeline only checks it; this loop records with the ack.
    pub(crate) inbox: Option<Arc<dyn InboxStore>>,
}

type SharedReceiver = Arc<Mutex<Box<dyn Receiver>>>;

/// Runs until `stop` is cancelled or the receiver ends: starts the workers, waits for
/// them (each finishes the delivery it holds), then closes the receiver. Settlements
/// still committing are tracked by `tracker` so shutdown can wait for them.
pub(crate) async fn run(
    rt: EndpointRuntime,
    pipeline: BoxPipeline,
    receiver: Box<dyn Receiver>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let rt = Arc::new(rt);
    let receiver: SharedReceiver = Arc::new(Mutex::new(receiver));
    // Cancelled by `stop`, or by the first worker that sees the receiver end.
    let ended = stop.child_token();
    let workers: Vec<_> = (0..rt.settings.concurrency.max(1))
        .map(|_| {
            tokio::spawn(worker(
                rt.clone(),
                pipeline.clone(),
                receiver.clone(),
                ended.clone(),
                stop.clone(),
                tracker.clone(),
            ))
        })
        .collect();
    for w in workers {
        if let Err(e) = w.await {
            tracing::error!(endpoint = %rt.name, error = %e, "an endpoint worker ended abnormally");
        }
    }
    let closed = receiver.lock().await.close().await;
    if let Err(e) = closed {
        tracing::warn!(endpoint = %rt.name, error = %e, "closing the receiver failed");
    }
}

/// One handler slot: takes a delivery when idle, handles it, hands off its settlement.
async fn worker(
    rt: Arc<EndpointRuntime>,
    mut pipeline: BoxPipeline,
    receiver: SharedReceiver,
    ended: CancellationToken,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        // Checked first, then raced only while waiting: waiting on the token registers a
        // waker under its lock, which a delivery that is already there does not need.
        if ended.is_cancelled() {
            break;
        }
        let next = tokio::select! {
            biased;
            d = next_delivery(&rt.name, &receiver) => d,
            _ = ended.cancelled() => break,
        };
        match next {
            Some(d) => process(&rt, &mut pipeline, d, &stop, &tracker).await,
            None => {
                ended.cancel();
                break;
            }
        }
    }
}

/// The next delivery, or `None` once the receiver has ended. A failing receiver is retried
/// every second while holding it, so idle workers wait behind one retrying worker.
async fn next_delivery(endpoint: &str, receiver: &SharedReceiver) -> Option<Delivery> {
    let mut r = receiver.lock().await;
    loop {
        match r.recv().await {
            Ok(d) => return d,
            Err(e) => {
                tracing::warn!(endpoint = %endpoint, error = %e, "receive failed; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Handles one delivery and hands its settlement off.
async fn process(
    rt: &Arc<EndpointRuntime>,
    pipeline: &mut BoxPipeline,
    d: Delivery,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) {
    let Delivery {
        envelope,
        delivery_count,
        settle,
        ..
    } = d;
    let size = envelope.encoded_len();
    if size > rt.settings.max_message_size {
        let text = format!(
            "message of {size} bytes exceeds the endpoint limit of {} bytes",
            rt.settings.max_message_size
        );
        let err =
            HandlerError::with_reason(FaultReason::Oversize, crate::ErrorKind::Permanent, text);
        let taken = Taken::new(rt, envelope, delivery_count, settle);
        return hand_off(tracker, rt, "dead-letter", dead_letter(rt, taken, err, 1));
    }
    let taken = Taken::new(rt, envelope, delivery_count, settle);
    let env = taken.ctx.envelope();
    // No clock read for the usual message without an expiry.
    if env.expires_at.is_some() && env.is_expired(Utc::now()) {
        metrics::counter!(names::EXPIRED, "endpoint" => rt.name.to_string()).increment(1);
        tracing::info!(endpoint = %rt.name, id = %env.id, "expired message skipped");
        observe(rt, &taken, Outcome::Expired);
        return hand_off(tracker, rt, "ack", taken.settle.ack());
    }
    let result = handle(rt, pipeline, &taken).await;
    let (what, settlement) = settle_by(rt, taken, result, stop.is_cancelled());
    hand_off(tracker, rt, what, settlement);
}

/// A delivery being handled: its context (which owns the envelope) and its settlement.
struct Taken {
    ctx: ConsumeContext,
    settle: Box<dyn Settle>,
}

impl Taken {
    fn new(
        rt: &EndpointRuntime,
        envelope: Envelope,
        delivery_count: u32,
        settle: Box<dyn Settle>,
    ) -> Self {
        let ctx = ConsumeContext::with_shared_name(
            envelope,
            rt.producer.clone(),
            rt.name.clone(),
            delivery_count,
        );
        Taken { ctx, settle }
    }
}

/// Runs the pipeline, renewing the lease while the handler runs (a handler that is done at
/// its first poll never arms the timer).
async fn handle(
    rt: &EndpointRuntime,
    pipeline: &mut BoxPipeline,
    taken: &Taken,
) -> Result<(), HandlerError> {
    let svc = pipeline.ready().await?;
    let run = svc.call(Consume::new(taken.ctx.clone()));
    tokio::pin!(run);
    if let Poll::Ready(r) = futures::poll!(run.as_mut()) {
        return r;
    }
    let renew_every = (rt.settings.lease / 2).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            r = &mut run => return r,
            _ = tokio::time::sleep(renew_every) => {
                if let Err(e) = taken.settle.extend_lease(rt.settings.lease).await {
                    tracing::warn!(endpoint = %rt.name, error = %e, "lease renewal failed");
                }
            }
        }
    }
}

/// A settlement's transport call (already boxed by the transport's `async_trait`).
type Settlement = Pin<Box<dyn Future<Output = crate::Result<()>> + Send>>;

/// Polls `settlement` once here; if it is still waiting (a commit, an fsync), it goes on
/// as a tracked task and the worker moves on. A failure is logged as `what` failing.
fn hand_off(
    tracker: &TaskTracker,
    rt: &EndpointRuntime,
    what: &'static str,
    mut settlement: Settlement,
) {
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    match settlement.as_mut().poll(&mut cx) {
        Poll::Ready(r) => log_settle(&rt.name, what, r),
        Poll::Pending => {
            let name = rt.name.clone();
            tracker.spawn(async move { log_settle(&name, what, settlement.await) });
        }
    }
}

/// The settlement of a handled delivery by the pipeline's result, and its name for logs.
fn settle_by(
    rt: &Arc<EndpointRuntime>,
    taken: Taken,
    result: Result<(), HandlerError>,
    stopping: bool,
) -> (&'static str, Settlement) {
    match result {
        Ok(()) => {
            observe(rt, &taken, Outcome::Consumed);
            ("ack", ack(rt, taken))
        }
        Err(e) if e.deferral().is_some() => {
            let delay = e.deferral().unwrap_or_default();
            observe(rt, &taken, Outcome::Deferred { delay });
            if stopping {
                return ("release", taken.settle.release());
            }
            ("nack", taken.settle.nack(delay, None))
        }
        Err(e) if e.is_permanent() => {
            let attempts = taken.ctx.attempts_made();
            ("dead-letter", dead_letter(rt, taken, e, attempts))
        }
        Err(e) => match rt.settings.redelivery.delay_for(taken.ctx.delivery_count()) {
            Some(delay) => {
                let env = taken.ctx.envelope();
                metrics::counter!(names::REDELIVERIES, "endpoint" => rt.name.to_string())
                    .increment(1);
                tracing::info!(endpoint = %rt.name, id = %env.id, delivery = taken.ctx.delivery_count(), ?delay, error = %e, "handler failed; redelivering later");
                observe(
                    rt,
                    &taken,
                    Outcome::Redelivered {
                        delay,
                        error: e.to_string(),
                    },
                );
                let mut updated = env.clone();
                Fault::mark_first_failure(&mut updated, Utc::now());
                ("nack", taken.settle.nack(delay, Some(updated)))
            }
            None => {
                let attempts = taken.ctx.attempts_made();
                ("dead-letter", dead_letter(rt, taken, e, attempts))
            }
        },
    }
}

/// Acks a handled delivery and records it in the endpoint's inbox: in the ack's own commit
/// when the inbox lives where the ack commits, else record first, then ack (a failed
/// record leaves it unacked: it comes back and the inbox check runs again).
fn ack(rt: &EndpointRuntime, taken: Taken) -> Settlement {
    let Some(store) = &rt.inbox else {
        return taken.settle.ack();
    };
    let id = taken.ctx.message_id();
    let name = rt.name.clone();
    let settle = taken.settle;
    match (store.home(), settle.inbox_home()) {
        (Some(a), Some(b)) if a == b => {
            Box::pin(async move { settle.ack_recording(id, &name).await })
        }
        _ => {
            let store = store.clone();
            Box::pin(async move {
                store.record(id, &name).await?;
                settle.ack().await
            })
        }
    }
}

fn dead_letter(rt: &EndpointRuntime, taken: Taken, e: HandlerError, attempts: u32) -> Settlement {
    let delivery_count = taken.ctx.delivery_count();
    let mut fault = Fault::new(e.reason(), e.to_string(), &rt.name);
    fault.permanent = e.is_permanent();
    fault.attempts = attempts;
    fault.redeliveries = delivery_count.saturating_sub(1);
    let mut env = taken.ctx.envelope().clone();
    fault.apply(&mut env);
    metrics::counter!(names::DEAD_LETTERED, "endpoint" => rt.name.to_string(), "reason" => e.reason().as_str()).increment(1);
    tracing::warn!(endpoint = %rt.name, id = %env.id, message_type = %env.message_type, reason = %e.reason(), error = %e, "message moved to the error queue");
    observe(
        rt,
        &taken,
        Outcome::DeadLettered {
            reason: e.reason(),
            error: e.to_string(),
        },
    );
    taken.settle.dead_letter(env)
}

fn observe(rt: &EndpointRuntime, taken: &Taken, outcome: Outcome) {
    if let Some(o) = &rt.observer {
        o.observe(Observation {
            endpoint: rt.name.to_string(),
            envelope: taken.ctx.envelope().clone(),
            delivery_count: taken.ctx.delivery_count(),
            outcome,
        });
    }
}

fn log_settle(endpoint: &str, what: &str, r: crate::Result<()>) {
    if let Err(e) = r {
        // The message is not lost: its lease runs out and it is delivered again.
        tracing::error!(endpoint = %endpoint, error = %e, "{what} failed; the message will come back when its lease ends");
    }
}
