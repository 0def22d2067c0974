//! W3C trace-context propagation, the `tracing` spans and the metric names Tidings records.
//!
//! A consumed message's `traceparent` becomes the current trace (a task-local) while its
//! handler runs, so messages the handler sends carry the same trace id with a new parent
//! span id. Feature `otel` bridges these spans to OpenTelemetry (see `crate::otel`).
//!
//! Spans (see [`spans`]): `tidings.publish` (an event) and `tidings.send` (a command) around
//! each [`Producer::dispatch`](crate::Producer::dispatch), `tidings.receive` per delivery and
//! `tidings.handle` per handler attempt. Each carries `messaging.message.id`,
//! `message_type`, `messaging.message.conversation_id` (the correlation id) and `endpoint`
//! (the handle span also `attempt`), so every log line inside them does too.
//!
//! Exported to OpenTelemetry (feature `otel`), the spans follow the messaging semantic
//! conventions (see [`attributes`]): the producer spans are named `send {destination}`
//! (kind producer, `messaging.operation.type` `send`), the receive span
//! `process {destination}` (kind consumer, `process`: Tidings pushes each delivery to its
//! handler), with `messaging.system`, `messaging.operation.name`,
//! `messaging.destination.name`, `messaging.message.id` and
//! `messaging.message.conversation_id`. The handle span is internal. A sent message's
//! `send` span is its creation context, so no `create` span is made (the conventions ask
//! for those only when a batch is sent); settlement opens no `settle` span.

use rand::Rng;
use tracing::field::Empty;

use crate::envelope::headers;
use crate::{Envelope, MessageKind};

/// The span names Tidings opens.
pub mod spans {
    /// Producer span of a published event (OpenTelemetry kind `producer`).
    pub const PUBLISH: &str = "tidings.publish";
    /// Producer span of a command sent to a queue (OpenTelemetry kind `producer`).
    pub const SEND: &str = "tidings.send";
    /// One delivery taken from a queue, continuing its `traceparent` (kind `consumer`).
    pub const RECEIVE: &str = "tidings.receive";
    /// One handler attempt (a child of the receive span; one per immediate retry).
    pub const HANDLE: &str = "tidings.handle";
}

/// OpenTelemetry messaging attribute names and values Tidings records on its spans.
pub mod attributes {
    /// The transport's name (`memory`, `sqlite`, `postgres`, `rabbitmq`, `nats`).
    pub const SYSTEM: &str = "messaging.system";
    /// The operation type: [`SEND`] or [`PROCESS`].
    pub const OPERATION_TYPE: &str = "messaging.operation.type";
    /// The operation's name (the first word of the span name).
    pub const OPERATION_NAME: &str = "messaging.operation.name";
    /// The queue or event a message is sent to, or the endpoint's queue it is consumed from.
    pub const DESTINATION_NAME: &str = "messaging.destination.name";
    /// The envelope's id.
    pub const MESSAGE_ID: &str = "messaging.message.id";
    /// The envelope's correlation id.
    pub const CONVERSATION_ID: &str = "messaging.message.conversation_id";
    /// The class of a failure: the fault reason (`handler-failed`, `timed-out`, ...) or
    /// `transient` / `permanent` for a failed send.
    pub const ERROR_TYPE: &str = "error.type";
    /// Operation type of a producer span: the message is sent (its creation context).
    pub const SEND: &str = "send";
    /// Operation type of a receive span: a delivery is processed by its handler.
    pub const PROCESS: &str = "process";
}

/// A span name of the messaging conventions, `{operation} {destination}`, formatted only
/// when a subscriber records it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OperationName<'a>(pub(crate) &'static str, pub(crate) &'a str);

impl std::fmt::Display for OperationName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0, self.1)
    }
}

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
    /// Gauge: messages scheduled for later, by `queue`.
    pub const QUEUE_SCHEDULED: &str = "tidings_queue_scheduled";
    /// Gauge: partition keys parked after a dead letter on an ordered queue, by `queue`.
    pub const QUEUE_PARKED_KEYS: &str = "tidings_queue_parked_keys";
    /// Counter: saga steps retried after an optimistic-concurrency conflict, by `saga`.
    pub const SAGA_CONFLICTS: &str = "tidings_saga_conflicts_total";
}

/// Gives every metric Tidings records its help text (the `# HELP` line in Prometheus) and
/// unit, on the recorder installed now; call it once after installing one.
///
/// ```
/// tidings_core::telemetry::describe_metrics(); // no recorder installed: a no-op
/// ```
pub fn describe_metrics() {
    use crate::outbox::names as relay;
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(names::SENT, "Messages sent or published, by message type.");
    describe_counter!(
        names::CONSUMED,
        "Messages handled successfully, by endpoint and message type."
    );
    describe_counter!(
        names::FAILED,
        "Handler failures (each attempt), by endpoint, message type and reason."
    );
    describe_counter!(names::RETRIES, "Immediate retries, by endpoint.");
    describe_counter!(
        names::REDELIVERIES,
        "Delayed redeliveries scheduled, by endpoint."
    );
    describe_counter!(
        names::DEAD_LETTERED,
        "Messages moved to an error queue, by endpoint and reason."
    );
    describe_counter!(names::EXPIRED, "Expired messages skipped, by endpoint.");
    describe_counter!(
        names::DUPLICATES,
        "Duplicates skipped by the inbox, by endpoint."
    );
    describe_gauge!(
        names::IN_FLIGHT,
        "Deliveries being handled now, by endpoint."
    );
    describe_histogram!(
        names::HANDLER_SECONDS,
        Unit::Seconds,
        "Time spent in the pipeline per delivery, by endpoint and message type."
    );
    describe_gauge!(
        names::BREAKER_STATE,
        "Circuit breaker state (0 closed, 1 half-open, 2 open), by endpoint."
    );
    describe_gauge!(names::QUEUE_DEPTH, "Messages ready in a queue, by queue.");
    describe_gauge!(
        names::ERROR_DEPTH,
        "Messages in a queue's error queue, by queue."
    );
    describe_gauge!(
        names::OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest waiting message, by queue."
    );
    describe_gauge!(
        names::QUEUE_SCHEDULED,
        "Messages scheduled for later delivery, by queue."
    );
    describe_gauge!(
        names::QUEUE_PARKED_KEYS,
        "Partition keys parked after a dead letter, by queue."
    );
    describe_counter!(
        names::SAGA_CONFLICTS,
        "Saga steps retried after a concurrent update, by saga."
    );
    describe_counter!(
        relay::SHIPPED,
        "Outbox rows shipped to the broker by the relay."
    );
    describe_counter!(relay::ERRORS, "Outbox relay batches that failed (retried).");
    describe_gauge!(relay::PENDING, "Outbox rows waiting to be shipped.");
    describe_histogram!(
        relay::BATCH_SECONDS,
        Unit::Seconds,
        "Time per outbox relay batch (claim, confirmed send, delete)."
    );
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
        // `vv-<32 hex>-<16 hex>-ff`, possibly followed by `-<more>` from a later version.
        let b = s.trim().as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        if b.len() > 55 && b[55] != b'-' {
            return None;
        }
        hex_value(&b[..2])?;
        let trace_id = hex_value(&b[3..35])?;
        let span_id = u64::try_from(hex_value(&b[36..52])?).ok()?;
        let flags = hex_value(&b[53..55])?;
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
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        put_hex(&mut out[3..19], (self.trace_id >> 64) as u64);
        put_hex(&mut out[19..35], self.trace_id as u64);
        put_hex(&mut out[36..52], self.span_id);
        if self.sampled {
            out[54] = b'1';
        }
        // Only ASCII was written, so this is never the empty default.
        std::str::from_utf8(&out)
            .map(str::to_owned)
            .unwrap_or_default()
    }
}

/// Shows a trace id as 32 lowercase hex digits when a span records it (nothing is
/// formatted for a span no subscriber wants).
#[derive(Debug, Clone, Copy)]
pub struct TraceIdHex(pub u128);

impl std::fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Shows a span id as 16 lowercase hex digits when recorded.
#[derive(Debug, Clone, Copy)]
pub struct SpanIdHex(pub u64);

impl std::fmt::Display for SpanIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The value of each byte as a hex digit, or 0xff for anything else.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The value of ASCII hex digits (at most 32), or `None` for anything else.
fn hex_value(digits: &[u8]) -> Option<u128> {
    // Two u64 halves: 64-bit shifts are cheaper than 128-bit ones.
    let half = |part: &[u8]| {
        let mut v = 0u64;
        let mut bad = 0u8;
        for &c in part {
            let d = HEX_VALUE[c as usize];
            bad |= d;
            v = v << 4 | u64::from(d & 0xf);
        }
        (bad & 0xf0 == 0).then_some(v)
    };
    let split = digits.len().saturating_sub(16);
    let (hi, lo) = digits.split_at(split);
    Some(u128::from(half(hi)?) << 64 | u128::from(half(lo)?))
}

/// Writes `v`'s low `out.len()` hex digits into `out`, zero-padded, lowercase.
fn put_hex(out: &mut [u8], mut v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `fut` with `ctx` as the current trace context.
pub async fn scope<F: std::future::Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// [`scope`] as a named future (no `async` block to box).
pub(crate) fn scoped<F: std::future::Future>(
    ctx: TraceContext,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<TraceContext, F> {
    CURRENT.scope(ctx, fut)
}

/// Runs `f` with `ctx` as the current trace context (for work done when a future is made,
/// not polled).
pub(crate) fn sync_scope<R>(ctx: TraceContext, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ctx, f)
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

/// The span around one outgoing message: `tidings.publish` for an event, `tidings.send` for
/// a command, exported as `send {destination}` with OpenTelemetry messaging fields. The
/// message and conversation ids and `trace_id` are recorded by [`record_outgoing`] once
/// the envelope exists.
pub(crate) fn producer_span(
    kind: MessageKind,
    system: &'static str,
    destination: &str,
    message_type: &str,
    source: Option<&str>,
) -> tracing::Span {
    macro_rules! span {
        ($name:expr) => {
            tracing::info_span!(
                $name,
                otel.name = %OperationName(attributes::SEND, destination),
                otel.kind = "producer",
                messaging.system = system,
                messaging.operation.type = attributes::SEND,
                messaging.operation.name = attributes::SEND,
                messaging.destination.name = destination,
                message_type,
                messaging.message.id = Empty,
                messaging.message.conversation_id = Empty,
                endpoint = source,
                trace_id = Empty,
                error = Empty,
                "error.type" = Empty,
                otel.status_code = Empty,
            )
        };
    }
    match kind {
        MessageKind::Event => span!(spans::PUBLISH),
        MessageKind::Command => span!(spans::SEND),
    }
}

/// Records the built envelope's ids on its producer span.
pub(crate) fn record_outgoing(span: &tracing::Span, env: &Envelope) {
    if span.is_disabled() {
        return;
    }
    span.record(attributes::MESSAGE_ID, tracing::field::display(env.id));
    if let Some(c) = &env.correlation_id {
        span.record(attributes::CONVERSATION_ID, c.as_str());
    }
    if let Some(ctx) = env
        .header(headers::TRACEPARENT)
        .and_then(TraceContext::parse)
    {
        span.record(
            "trace_id",
            tracing::field::display(TraceIdHex(ctx.trace_id)),
        );
    }
}

/// Records a failure on a span opened by Tidings (fields `error`, `error.type` and
/// `otel.status_code`).
pub(crate) fn record_error(span: &tracing::Span, error: &dyn std::fmt::Display, error_type: &str) {
    span.record("error", tracing::field::display(error));
    span.record(attributes::ERROR_TYPE, error_type);
    span.record("otel.status_code", "error");
}

/// Counts a sent message (transports that enqueue outside the bus, e.g. an outbox, call it too).
pub fn record_sent(env: &Envelope) {
    sent_counter(&env.message_type).increment(1);
}

/// The [`SENT`](names::SENT) counter of `message_type`.
pub(crate) fn sent_counter(message_type: &str) -> metrics::Counter {
    metrics::counter!(names::SENT, "message_type" => message_type.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let c = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&c.to_header()), Some(c));
        assert_eq!(TraceContext::parse("garbage"), None);
        let h = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let c = TraceContext::parse(h).unwrap();
        assert_eq!(c.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(c.span_id, 0xb7ad6b7169203331);
        assert!(c.sampled);
        assert_eq!(c.to_header(), h);
        assert_eq!(format!("{}", TraceIdHex(c.trace_id)), &h[3..35]);
        assert_eq!(format!("{}", SpanIdHex(c.span_id)), &h[36..52]);
        // A later version's extra field is ignored; the flags still count.
        assert!(
            !TraceContext::parse(&(h[..52].to_string() + "-00-x"))
                .unwrap()
                .sampled
        );
        assert_eq!(TraceContext::parse(&h.replace('b', "g")), None);
        assert_eq!(TraceContext::parse(&h[..54]), None);
        assert_eq!(TraceContext::parse(&format!("{h}x")), None);
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
