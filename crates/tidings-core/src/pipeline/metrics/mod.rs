//! Metrics step: counts consumed and failed messages and records handler latency, per
//! endpoint and message type; keeps the in-flight gauge.

mod layer;

pub use layer::MetricsLayer;

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;

use super::Consume;
use crate::handler::HandlerError;
use crate::telemetry::names;

/// Records metrics around the inner steps.
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
}

impl<S> Metrics<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Metrics { inner }
    }
}

impl<S> tower::Service<Consume> for Metrics<S>
where
    S: tower::Service<Consume, Response = (), Error = HandlerError> + Send,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        let endpoint = req.ctx.endpoint().to_string();
        let message_type = req.ctx.envelope().message_type.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let gauge = metrics::gauge!(names::IN_FLIGHT, "endpoint" => endpoint.clone());
            gauge.increment(1.0);
            let started = Instant::now();
            let result = fut.await;
            gauge.decrement(1.0);
            metrics::histogram!(names::HANDLER_SECONDS, "endpoint" => endpoint.clone(), "message_type" => message_type.clone())
                .record(started.elapsed().as_secs_f64());
            match &result {
                Ok(()) => metrics::counter!(names::CONSUMED, "endpoint" => endpoint, "message_type" => message_type).increment(1),
                Err(e) if e.deferral().is_none() => {
                    metrics::counter!(names::FAILED, "endpoint" => endpoint, "message_type" => message_type, "reason" => e.reason().as_str()).increment(1)
                }
                Err(_) => {}
            }
            result
        })
    }
}
