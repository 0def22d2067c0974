//! A circuit breaker per endpoint: [`CircuitBreaker`] stops calling a handler whose
//! dependency keeps failing, and lets one probe through after a pause.
//!
//! While the circuit is open, deliveries are not failed: the service returns
//! [`HandlerError::defer`] with the time left, so the endpoint redelivers them later
//! without counting an error. Transient errors (timeouts included) count as failures;
//! permanent errors (bad input) mean the dependency answered and count as successes;
//! deferrals are not counted. State changes set the
//! [`BREAKER_STATE`](crate::telemetry::names::BREAKER_STATE) gauge (0 closed, 1 half-open,
//! 2 open) labelled by endpoint; the open → half-open change is seen on the next delivery.

mod config;
mod layer;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::Service;

pub use config::BreakerConfig;
pub use layer::CircuitBreakerLayer;
pub use state::BreakerState;

use super::Consume;
use crate::handler::HandlerError;
use crate::telemetry::names;
use state::{Admit, Machine, Outcome};

/// A circuit breaker around the inner step; made by [`CircuitBreakerLayer`]. Clones share
/// one breaker.
#[derive(Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    machine: Arc<Mutex<Machine>>,
}

impl<S: Clone> Clone for CircuitBreaker<S> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            machine: self.machine.clone(),
        }
    }
}

impl<S> CircuitBreaker<S> {
    /// A new, closed breaker around `inner`.
    pub fn new(inner: S, config: BreakerConfig) -> Self {
        CircuitBreaker {
            inner,
            machine: Arc::new(Mutex::new(Machine::new(config))),
        }
    }

    /// The breaker's state now.
    pub fn state(&self) -> BreakerState {
        lock(&self.machine).state(Instant::now())
    }
}

/// Locks the machine; a panic elsewhere while holding the lock cannot leave it
/// inconsistent (every update is a single assignment), so poisoning is ignored.
fn lock(machine: &Mutex<Machine>) -> MutexGuard<'_, Machine> {
    machine.lock().unwrap_or_else(|e| e.into_inner())
}

fn report(endpoint: &str, state: Option<BreakerState>) {
    if let Some(state) = state {
        tracing::info!(endpoint, ?state, "circuit breaker state changed");
        metrics::gauge!(names::BREAKER_STATE, "endpoint" => endpoint.to_string())
            .set(state.gauge_value());
    }
}

fn outcome(result: &Result<(), HandlerError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Success,
        Err(e) if e.deferral().is_some() => Outcome::Ignored,
        Err(e) if e.is_permanent() => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

/// An admitted call in flight; a probe dropped before it finished frees the probe slot.
struct Permit {
    machine: Arc<Mutex<Machine>>,
    admit: Admit,
    endpoint: String,
    done: bool,
}

impl Permit {
    fn finish(mut self, result: &Result<(), HandlerError>) {
        self.done = true;
        let changed = lock(&self.machine).record(self.admit, outcome(result), Instant::now());
        report(&self.endpoint, changed);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.admit == Admit::Probe {
            lock(&self.machine).release_probe();
        }
    }
}

impl<S> Service<Consume> for CircuitBreaker<S>
where
    S: Service<Consume, Response = (), Error = HandlerError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        let endpoint = req.ctx.endpoint().to_string();
        let (admit, changed) = lock(&self.machine).admit(Instant::now());
        report(&endpoint, changed);
        if let Admit::Defer(delay) = admit {
            tracing::debug!(endpoint, ?delay, "circuit open: deferring delivery");
            return Box::pin(futures::future::ready(Err(HandlerError::defer(
                delay,
                "circuit open",
            ))));
        }
        let permit = Permit {
            machine: self.machine.clone(),
            admit,
            endpoint,
            done: false,
        };
        let future = self.inner.call(req);
        Box::pin(async move {
            let result = future.await;
            permit.finish(&result);
            result
        })
    }
}
