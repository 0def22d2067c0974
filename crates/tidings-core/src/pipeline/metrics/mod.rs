//! Metrics step: counts consumed and failed messages and records handler latency, per
//! endpoint and message type; keeps the in-flight gauge.

mod layer;

pub use layer::MetricsLayer;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use metrics::{Counter, Gauge, Histogram};

use super::Consume;
use crate::handler::HandlerError;
use crate::metric_cache::MetricCache;
use crate::telemetry::names;

/// Counts, times and gauges each message through the rest of the pipeline.
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    handles: Arc<HandleCache>,
}

impl<S> Metrics<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Metrics {
            inner,
            handles: Arc::default(),
        }
    }
}

/// The metric handles of one (endpoint, message type) (see [`MetricCache`]).
#[derive(Debug)]
struct Handles {
    endpoint: String,
    message_type: String,
    in_flight: Gauge,
    seconds: Histogram,
    consumed: Counter,
}

type HandleCache = MetricCache<Handles>;

fn handles(cache: &HandleCache, endpoint: &str, message_type: &str) -> Arc<(usize, Handles)> {
    cache.get(
        message_type,
        |h| h.endpoint == endpoint,
        || {
            let (e, t) = (endpoint.to_string(), message_type.to_string());
            Handles {
                in_flight: metrics::gauge!(names::IN_FLIGHT, "endpoint" => e.clone()),
                seconds: metrics::histogram!(names::HANDLER_SECONDS, "endpoint" => e.clone(), "message_type" => t.clone()),
                consumed: metrics::counter!(names::CONSUMED, "endpoint" => e.clone(), "message_type" => t.clone()),
                endpoint: e,
                message_type: t,
            }
        },
    )
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
        let cached = handles(
            &self.handles,
            req.ctx.endpoint(),
            &req.ctx.envelope().message_type,
        );
        let fut = self.inner.call(req);
        Box::pin(async move {
            let handles = &cached.1;
            handles.in_flight.increment(1.0);
            let started = Instant::now();
            let result = fut.await;
            handles.in_flight.decrement(1.0);
            handles.seconds.record(started.elapsed().as_secs_f64());
            match &result {
                Ok(()) => handles.consumed.increment(1),
                Err(e) if e.deferral().is_none() => {
                    metrics::counter!(names::FAILED, "endpoint" => handles.endpoint.clone(), "message_type" => handles.message_type.clone(), "reason" => e.reason().as_str()).increment(1)
                }
                Err(_) => {}
            }
            result
        })
    }
}
