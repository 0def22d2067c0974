//! Immediate retries within one delivery: [`Retry`] calls the inner step again after a
//! transient failure, as long as its [`RetryPolicy`] gives a delay.
//!
//! Permanent errors and deferrals ([`HandlerError::deferral`]) are never retried. Each
//! retry sees the context at the next attempt number ([`ConsumeContext::attempt`]) and
//! counts in the [`RETRIES`](crate::telemetry::names::RETRIES) metric. Waits use
//! [`tokio::time::sleep`], so tests under paused time run instantly.
//!
//! [`ConsumeContext::attempt`]: crate::ConsumeContext::attempt

mod backoff;
mod layer;
mod policy;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Service, ServiceExt};

pub use backoff::Exponential;
pub use layer::RetryLayer;
pub use policy::{Filter, Intervals, NoRetry, RetryPolicy};

use super::Consume;
use crate::handler::HandlerError;
use crate::telemetry::names;

/// Retries the inner step per policy `P`; made by [`RetryLayer`].
#[derive(Debug)]
pub struct Retry<S, P> {
    inner: S,
    policy: Arc<P>,
}

impl<S: Clone, P> Clone for Retry<S, P> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S, P: RetryPolicy> Retry<S, P> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: P) -> Self {
        Self::from_arc(inner, Arc::new(policy))
    }
}

impl<S, P> Retry<S, P> {
    pub(super) fn from_arc(inner: S, policy: Arc<P>) -> Self {
        Retry { inner, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

/// Whether `error` may be retried at all, whatever the policy says.
fn retryable(error: &HandlerError) -> bool {
    !error.is_permanent() && error.deferral().is_none()
}

impl<S, P> Service<Consume> for Retry<S, P>
where
    S: Service<Consume, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    P: RetryPolicy,
{
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        // The ready service handles the first attempt; the clone left behind stays
        // unready until its own `poll_ready`, as tower requires.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            let mut attempt = req.ctx.attempt();
            let mut result = inner.call(req.clone()).await;
            loop {
                let error = match result {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                };
                if !retryable(&error) {
                    return Err(error);
                }
                let Some(delay) = policy.next_delay(attempt, &error) else {
                    return Err(error);
                };
                attempt = attempt.saturating_add(1);
                tracing::debug!(
                    endpoint = req.ctx.endpoint(),
                    message_id = %req.ctx.message_id(),
                    attempt,
                    ?delay,
                    error = %error,
                    "retrying handler"
                );
                metrics::counter!(names::RETRIES, "endpoint" => req.ctx.endpoint().to_string())
                    .increment(1);
                tokio::time::sleep(delay).await;
                let retry = Consume {
                    ctx: req.ctx.with_attempt(attempt),
                    message: req.message.clone(),
                };
                result = match inner.ready().await {
                    Ok(svc) => svc.call(retry).await,
                    Err(e) => Err(e),
                };
            }
        })
    }
}
