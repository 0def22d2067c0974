//! The receive loop of one endpoint: takes deliveries (prefetch ≤ N, concurrency ≤ M),
//! runs each through the pipeline while renewing its lease, and settles it — ack, delayed
//! redelivery, deferral, or dead letter with fault headers.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::endpoint::EndpointSettings;
use crate::handler::HandlerError;
use crate::observe::{Observation, Observer, Outcome};
use crate::pipeline::inbox::InboxStore;
use crate::pipeline::{BoxPipeline, Consume};
use crate::telemetry::names;
use crate::transport::{Delivery, Receiver};
use crate::{ConsumeContext, Fault, FaultReason, Producer};

/// Everything one endpoint's loop needs.
#[derive(Clone)]
pub(crate) struct EndpointRuntime {
    pub(crate) name: String,
    pub(crate) settings: EndpointSettings,
    pub(crate) pipeline: BoxPipeline,
    pub(crate) producer: Producer,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// The endpoint's inbox: its pipeline only checks it; this loop records with the ack.
    pub(crate) inbox: Option<Arc<dyn InboxStore>>,
}

/// Runs until `stop` is cancelled or the receiver closes. In-flight handlers are tracked
/// by `tracker` so shutdown can wait for them.
pub(crate) async fn run(
    rt: EndpointRuntime,
    mut receiver: Box<dyn Receiver>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(rt.settings.concurrency.max(1)));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let delivery = tokio::select! {
            _ = stop.cancelled() => break,
            d = receiver.recv() => d,
        };
        match delivery {
            Ok(Some(d)) => {
                let rt = rt.clone();
                let stop = stop.clone();
                tracker.spawn(async move {
                    process(&rt, d, &stop, permit).await;
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(endpoint = %rt.name, error = %e, "receive failed; retrying in 1s");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    if let Err(e) = receiver.close().await {
        tracing::warn!(endpoint = %rt.name, error = %e, "closing the receiver failed");
    }
}

/// Handles one delivery and settles it. The handler slot (`permit`) is given back as soon
/// as the handler is done, so a slow commit of the settlement (an fsync) does not idle a
/// handler; unsettled deliveries stay bounded by the transport's prefetch.
pub(crate) async fn process(
    rt: &EndpointRuntime,
    d: Delivery,
    stop: &CancellationToken,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let env = &d.envelope;
    let size = env.encoded_len();
    if size > rt.settings.max_message_size {
        let text = format!(
            "message of {size} bytes exceeds the endpoint limit of {} bytes",
            rt.settings.max_message_size
        );
        let err =
            HandlerError::with_reason(FaultReason::Oversize, crate::ErrorKind::Permanent, text);
        return dead_letter(rt, d, &err, 1).await;
    }
    if env.is_expired(Utc::now()) {
        metrics::counter!(names::EXPIRED, "endpoint" => rt.name.clone()).increment(1);
        tracing::info!(endpoint = %rt.name, id = %env.id, "expired message skipped");
        observe(rt, &d, Outcome::Expired);
        return settle(rt, "ack", d.settle.ack().await);
    }
    let ctx = ConsumeContext::new(
        d.envelope.clone(),
        rt.producer.clone(),
        &rt.name,
        d.delivery_count,
    );
    let probe = ctx.clone();
    let run = rt.pipeline.clone().oneshot(Consume::new(ctx));
    tokio::pin!(run);
    // Renew the lease while the handler runs.
    let renew_every = (rt.settings.lease / 2).max(Duration::from_millis(50));
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tokio::time::sleep(renew_every) => {
                if let Err(e) = d.settle.extend_lease(rt.settings.lease).await {
                    tracing::warn!(endpoint = %rt.name, error = %e, "lease renewal failed");
                }
            }
        }
    };
    drop(permit);
    match result {
        Ok(()) => {
            observe(rt, &d, Outcome::Consumed);
            settle(rt, "ack", ack(rt, d).await)
        }
        Err(e) if e.deferral().is_some() => {
            let delay = e.deferral().unwrap_or_default();
            observe(rt, &d, Outcome::Deferred { delay });
            if stop.is_cancelled() {
                return settle(rt, "release", d.settle.release().await);
            }
            settle(rt, "nack", d.settle.nack(delay, None).await)
        }
        Err(e) if e.is_permanent() => dead_letter(rt, d, &e, probe.attempts_made()).await,
        Err(e) => match rt.settings.redelivery.delay_for(d.delivery_count) {
            Some(delay) => {
                metrics::counter!(names::REDELIVERIES, "endpoint" => rt.name.clone()).increment(1);
                tracing::info!(endpoint = %rt.name, id = %d.envelope.id, delivery = d.delivery_count, ?delay, error = %e, "handler failed; redelivering later");
                observe(
                    rt,
                    &d,
                    Outcome::Redelivered {
                        delay,
                        error: e.to_string(),
                    },
                );
                let mut updated = d.envelope.clone();
                Fault::mark_first_failure(&mut updated, Utc::now());
                settle(rt, "nack", d.settle.nack(delay, Some(updated)).await)
            }
            None => dead_letter(rt, d, &e, probe.attempts_made()).await,
        },
    }
}

/// Acks a handled delivery and records it in the endpoint's inbox: in the ack's own commit
/// when the inbox lives where the ack commits, else record first, then ack (a failed
/// record leaves it unacked: it comes back and the inbox check runs again).
async fn ack(rt: &EndpointRuntime, d: Delivery) -> crate::Result<()> {
    let Some(store) = &rt.inbox else {
        return d.settle.ack().await;
    };
    let id = d.envelope.id;
    match (store.home(), d.settle.inbox_home()) {
        (Some(a), Some(b)) if a == b => d.settle.ack_recording(id, &rt.name).await,
        _ => {
            store.record(id, &rt.name).await?;
            d.settle.ack().await
        }
    }
}

async fn dead_letter(rt: &EndpointRuntime, d: Delivery, e: &HandlerError, attempts: u32) {
    let mut fault = Fault::new(e.reason(), e.to_string(), &rt.name);
    fault.permanent = e.is_permanent();
    fault.attempts = attempts;
    fault.redeliveries = d.delivery_count.saturating_sub(1);
    let mut env = d.envelope.clone();
    fault.apply(&mut env);
    metrics::counter!(names::DEAD_LETTERED, "endpoint" => rt.name.clone(), "reason" => e.reason().as_str()).increment(1);
    tracing::warn!(endpoint = %rt.name, id = %env.id, message_type = %env.message_type, reason = %e.reason(), error = %e, "message moved to the error queue");
    observe(
        rt,
        &d,
        Outcome::DeadLettered {
            reason: e.reason(),
            error: e.to_string(),
        },
    );
    settle(rt, "dead-letter", d.settle.dead_letter(env).await)
}

fn observe(rt: &EndpointRuntime, d: &Delivery, outcome: Outcome) {
    if let Some(o) = &rt.observer {
        o.observe(Observation {
            endpoint: rt.name.clone(),
            envelope: d.envelope.clone(),
            delivery_count: d.delivery_count,
            outcome,
        });
    }
}

fn settle(rt: &EndpointRuntime, what: &str, r: crate::Result<()>) {
    if let Err(e) = r {
        // The message is not lost: its lease runs out and it is delivered again.
        tracing::error!(endpoint = %rt.name, error = %e, "{what} failed; the message will come back when its lease ends");
    }
}
