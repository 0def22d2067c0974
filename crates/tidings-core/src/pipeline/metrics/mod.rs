//! Metrics step: counts consumed and failed messages and records handler latency, per
//! endpoint and message type; keeps the in-flight gauge.

mod layer;

pub use layer::MetricsLayer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use pin_project_lite::pin_project;

use super::Consume;
use crate::handler::HandlerError;
use crate::metric_cache::MetricCache;
use crate::telemetry::names;

/// Counts, times and gauges each message through the rest of the pipeline.
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    handles: Arc<HandleCache>,
    /// The handles of the last message, checked before the shared cache (each worker owns
    /// its clone of the pipeline, and an endpoint sees few message types).
    last: Option<Arc<(usize, Handles)>>,
}

impl<S> Metrics<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Metrics {
            inner,
            handles: Arc::default(),
            last: None,
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
    S: tower::Service<Consume, Response = (), Error = HandlerError>,
{
    type Response = ();
    type Error = HandlerError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        let endpoint = req.ctx.endpoint();
        let message_type = &req.ctx.envelope().message_type;
        let recorder = crate::metric_cache::current_recorder();
        let cached = match &self.last {
            Some(h)
                if h.0 == recorder
                    && h.1.message_type == *message_type
                    && h.1.endpoint == endpoint =>
            {
                h.clone()
            }
            _ => {
                let h = handles(&self.handles, endpoint, message_type);
                self.last = Some(h.clone());
                h
            }
        };
        ResponseFuture {
            inner: self.inner.call(req),
            cached,
            started: None,
        }
    }
}

pin_project! {
    /// The future of a [`Metrics`] call.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        cached: Arc<(usize, Handles)>,
        started: Option<Instant>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    type Output = Result<(), HandlerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let handles = &this.cached.1;
        let started = *this.started.get_or_insert_with(|| {
            handles.in_flight.increment(1.0);
            Instant::now()
        });
        let result = std::task::ready!(this.inner.poll(cx));
        handles.in_flight.decrement(1.0);
        handles.seconds.record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => handles.consumed.increment(1),
            Err(e) if e.deferral().is_none() => {
                metrics::counter!(names::FAILED, "endpoint" => handles.endpoint.clone(), "message_type" => handles.message_type.clone(), "reason" => e.reason().as_str()).increment(1)
            }
            Err(_) => {}
        }
        Poll::Ready(result)
    }
}
