//! Tracing steps: [`Trace`] opens a `tidings.receive` span per delivery (exported as
//! `process {queue}`, kind consumer, `messaging.operation.type` `process`: see
//! [`crate::telemetry`]) that continues the message's W3C `traceparent` (recorded as span
//! fields) and makes it current, so messages the handler sends carry the same trace id. With feature `otel` the span's OpenTelemetry
//! parent is the `traceparent` (see `crate::otel`). [`HandleSpan`] opens a `tidings.handle`
//! span per handler attempt (inside the retry step).

mod future;
mod handle;
mod layer;

pub use future::SpanFuture;
pub use handle::{HandleSpan, HandleSpanLayer};
pub use layer::TraceLayer;

use std::task::{Context, Poll};

use tokio::task::futures::TaskLocalFuture;
use tracing::Instrument;

use super::Consume;
use crate::envelope::headers;
use crate::handler::HandlerError;
use crate::telemetry::{self, attributes, OperationName, TraceContext};

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
    S: tower::Service<Consume, Response = (), Error = HandlerError>,
{
    type Response = ();
    type Error = HandlerError;
    type Future = SpanFuture<TaskLocalFuture<TraceContext, S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        let env = req.ctx.envelope();
        let parent = env
            .header(headers::TRACEPARENT)
            .and_then(TraceContext::parse);
        let ctx = parent.map_or_else(TraceContext::new_root, |p| p.child());
        let endpoint = req.ctx.endpoint();
        let span = tracing::info_span!(
            telemetry::spans::RECEIVE,
            otel.name = %OperationName(attributes::PROCESS, endpoint),
            otel.kind = "consumer",
            messaging.system = req.ctx.producer().transport().name(),
            messaging.operation.type = attributes::PROCESS,
            messaging.operation.name = attributes::PROCESS,
            messaging.destination.name = endpoint,
            endpoint,
            message_type = %env.message_type,
            messaging.message.id = %env.id,
            messaging.message.conversation_id = env.correlation_id.as_deref(),
            trace_id = tracing::field::Empty,
            parent_span_id = parent.map(|p| tracing::field::display(telemetry::SpanIdHex(p.span_id))),
            delivery = req.ctx.delivery_count(),
            error = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // With an OpenTelemetry layer, the exported span continues `parent` and its own ids
        // become the current trace context.
        #[cfg(feature = "otel")]
        let ctx = crate::otel::continue_trace(&span, parent).unwrap_or(ctx);
        span.record(
            "trace_id",
            tracing::field::display(telemetry::TraceIdHex(ctx.trace_id)),
        );
        // Inner steps may open their spans (e.g. the first `tidings.handle`) while called,
        // not only when polled: call them inside this span so those are its children.
        let fut = span.in_scope(|| telemetry::sync_scope(ctx, || self.inner.call(req)));
        SpanFuture::new(telemetry::scoped(ctx, fut).instrument(span))
    }
}
