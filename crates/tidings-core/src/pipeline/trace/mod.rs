//! Tracing step: a `tidings.consume` span per delivery that continues the message's W3C
//! `traceparent` (recorded as span fields) and makes it current, so messages the handler
//! sends carry the same trace id. With feature `otel` the span's OpenTelemetry parent is the
//! `traceparent` (see `crate::otel`).

mod layer;

pub use layer::TraceLayer;

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tracing::Instrument;

use super::Consume;
use crate::envelope::headers;
use crate::handler::HandlerError;
use crate::telemetry::{self, TraceContext};

/// Runs the inner steps in a span.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
}

impl<S> Trace<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Trace { inner }
    }
}

impl<S> tower::Service<Consume> for Trace<S>
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
        let env = req.ctx.envelope();
        let parent = env
            .header(headers::TRACEPARENT)
            .and_then(TraceContext::parse);
        let ctx = parent.map_or_else(TraceContext::new_root, |p| p.child());
        let span = tracing::info_span!(
            "tidings.consume",
            endpoint = %req.ctx.endpoint(),
            message_type = %env.message_type,
            message_id = %env.id,
            correlation_id = env.correlation_id.as_deref().unwrap_or(""),
            trace_id = tracing::field::Empty,
            parent_span_id = %parent.map(|p| format!("{:016x}", p.span_id)).unwrap_or_default(),
            delivery = req.ctx.delivery_count(),
        );
        // With an OpenTelemetry layer, the exported span continues `parent` and its own ids
        // become the current trace context.
        #[cfg(feature = "otel")]
        let ctx = crate::otel::continue_trace(&span, parent).unwrap_or(ctx);
        span.record(
            "trace_id",
            tracing::field::display(format!("{:032x}", ctx.trace_id)),
        );
        let fut = self.inner.call(req);
        Box::pin(telemetry::scope(ctx, fut).instrument(span))
    }
}
