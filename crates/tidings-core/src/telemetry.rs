//! W3C trace-context propagation and the metric names Tidings records.
//!
//! A consumed message's `traceparent` becomes the current trace (a task-local) while its
//! handler runs, so messages the handler sends carry the same trace id with a new parent
//! span id. Feature `otel` bridges these spans to OpenTelemetry (see `crate::otel`).

use rand::Rng;

use crate::envelope::headers;
use crate::Envelope;

/// Metric names (Prometheus style) recorded by Tidings.
pub mod names {
    /// Counter: messages sent or published, by `message_type`.
    pub const SENT: &str = "tidings_messages_sent_total";
    /// Counter: messages consumed successfully, by `endpoint`, `message_type`.
    pub const CONSUMED: &str = "tidings_messages_consumed_total";
    /// Counter: handler failures (each attempt), by `endpoint`, `message_type`.
    pub const FAILED: &str = "tidings_messages_failed_total";
    /// Counter: immediate retries, by `endpoint`.
    pub const RETRIES: &str = "tidings_retries_total";
    /// Counter: delayed redeliveries, by `endpoint`.
    pub const REDELIVERIES: &str = "tidings_redeliveries_total";
    /// Counter: dead-lettered, by `endpoint`, `reason`.
    pub const DEAD_LETTERED: &str = "tidings_dead_lettered_total";
    /// Counter: expired messages skipped, by `endpoint`.
    pub const EXPIRED: &str = "tidings_expired_total";
    /// Counter: duplicates skipped by the inbox, by `endpoint`.
    pub const DUPLICATES: &str = "tidings_inbox_duplicates_total";
    /// Gauge: deliveries being handled, by `endpoint`.
    pub const IN_FLIGHT: &str = "tidings_in_flight";
    /// Histogram: handler latency in seconds, by `endpoint`, `message_type`.
    pub const HANDLER_SECONDS: &str = "tidings_handler_duration_seconds";
    /// Gauge: circuit breaker state (0 closed, 1 half-open, 2 open), by `endpoint`.
    pub const BREAKER_STATE: &str = "tidings_breaker_state";
    /// Gauge: queue depth (ready), by `queue`.
    pub const QUEUE_DEPTH: &str = "tidings_queue_depth";
    /// Gauge: error queue depth, by `queue`.
    pub const ERROR_DEPTH: &str = "tidings_error_queue_depth";
    /// Gauge: age of the oldest waiting message in seconds, by `queue`.
    pub const OLDEST_AGE: &str = "tidings_queue_oldest_age_seconds";
}

/// A parsed W3C `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 128-bit trace id.
    pub trace_id: u128,
    /// 64-bit span id of the parent.
    pub span_id: u64,
    /// Sampled flag.
    pub sampled: bool,
}

impl TraceContext {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (v, t, p, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if v.len() != 2 || t.len() != 32 || p.len() != 16 || f.len() != 2 {
            return None;
        }
        let trace_id = u128::from_str_radix(t, 16).ok()?;
        let span_id = u64::from_str_radix(p, 16).ok()?;
        let flags = u8::from_str_radix(f, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// A new root trace.
    pub fn new_root() -> Self {
        let mut r = rand::rng();
        TraceContext {
            trace_id: r.random::<u128>().max(1),
            span_id: r.random::<u64>().max(1),
            sampled: true,
        }
    }

    /// A child span in the same trace.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: rand::rng().random::<u64>().max(1),
            ..*self
        }
    }

    /// Formats as a `traceparent` header value.
    pub fn to_header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `fut` with `ctx` as the current trace context.
pub async fn scope<F: std::future::Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The current trace context, if a consumed message set one.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok()
}

/// Sets `traceparent` on an outgoing envelope: a child of the current trace, or a new root.
///
/// With feature `otel`, a valid current OpenTelemetry span is the parent instead (its own
/// span id goes on the wire, so the receiver's span is its child in the exported trace).
pub(crate) fn inject_current(env: &mut Envelope) {
    if env.headers.contains_key(headers::TRACEPARENT) {
        return;
    }
    #[cfg(feature = "otel")]
    if let Some(ctx) = crate::otel::current() {
        env.headers
            .insert(headers::TRACEPARENT.into(), ctx.to_header());
        return;
    }
    let ctx = current().map_or_else(TraceContext::new_root, |c| c.child());
    env.headers
        .insert(headers::TRACEPARENT.into(), ctx.to_header());
}

/// Counts a sent message (transports that enqueue outside the bus, e.g. an outbox, call it too).
pub fn record_sent(env: &Envelope) {
    metrics::counter!(names::SENT, "message_type" => env.message_type.clone()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let c = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&c.to_header()), Some(c));
        assert_eq!(TraceContext::parse("garbage"), None);
        assert_eq!(
            TraceContext::parse("00-00000000000000000000000000000000-0000000000000001-01"),
            None
        );
    }

    #[tokio::test]
    async fn child_keeps_trace_id() {
        let root = TraceContext::new_root();
        let mut env = Envelope::new("t", 1, "{}");
        scope(root, async { inject_current(&mut env) }).await;
        let got = TraceContext::parse(env.header(headers::TRACEPARENT).unwrap()).unwrap();
        assert_eq!(got.trace_id, root.trace_id);
        assert_ne!(got.span_id, root.span_id);
    }
}
