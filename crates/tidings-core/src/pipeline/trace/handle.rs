//! [`HandleSpan`]: a `tidings.handle` span (internal) around each handler attempt,
//! carrying the fields every log line of a handler should have (`messaging.message.id`,
//! `message_type`, `messaging.message.conversation_id`, `attempt`, `endpoint`) and the
//! attempt's outcome.

use std::task::{Context, Poll};

use tracing::Instrument as _;

use super::SpanFuture;

use crate::handler::HandlerError;
use crate::pipeline::Consume;
use crate::telemetry;

/// Adds the per-attempt `tidings.handle` span (placed inside the retry step, so each
/// immediate retry is its own span with its `attempt`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HandleSpanLayer;

impl<S> tower::Layer<S> for HandleSpanLayer {
    type Service = HandleSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HandleSpan { inner }
    }
}

/// Runs one handler attempt in a `tidings.handle` span.
#[derive(Clone, Debug)]
pub struct HandleSpan<S> {
    inner: S,
}

impl<S> tower::Service<Consume> for HandleSpan<S>
where
    S: tower::Service<Consume, Response = (), Error = HandlerError>,
{
    type Response = ();
    type Error = HandlerError;
    type Future = SpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        let env = req.ctx.envelope();
        let span = tracing::info_span!(
            telemetry::spans::HANDLE,
            endpoint = %req.ctx.endpoint(),
            message_type = %env.message_type,
            messaging.message.id = %env.id,
            messaging.message.conversation_id = env.correlation_id.as_deref(),
            attempt = req.ctx.attempt(),
            delivery = req.ctx.delivery_count(),
            trace_id = telemetry::current()
                .map(|c| tracing::field::display(telemetry::TraceIdHex(c.trace_id))),
            error = tracing::field::Empty,
            "error.type" = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // Inside the span: a handler closure's synchronous part runs when it is called.
        let fut = span.in_scope(|| self.inner.call(req));
        SpanFuture::new(fut.instrument(span))
    }
}

/// Records a failed attempt or delivery: the error message, and (unless it is a deferral,
/// which is not a failure) an OpenTelemetry error status.
pub(super) fn record_failure(span: &tracing::Span, error: &HandlerError) {
    if error.deferral().is_some() {
        span.record("error", tracing::field::display(error));
    } else {
        telemetry::record_error(span, error, error.reason().as_str());
    }
}
