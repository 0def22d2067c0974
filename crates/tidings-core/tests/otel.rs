//! Feature `otel`: the spans of a three-hop flow (event → command → event) are exported as
//! one OpenTelemetry trace tree — send → process → handle → send → process → handle →
//! send → process → handle — and the `traceparent`s on the wire name the exported
//! producer spans. Span names and attributes follow the messaging semantic conventions
//! (`send {destination}`, `process {destination}`, `messaging.operation.type`, ...). A
//! retried handler opens one `tidings.handle` span per attempt.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tidings_core::envelope::headers;
use tidings_core::pipeline::retry::Intervals;
use tidings_core::telemetry::{attributes, spans, TraceContext};
use tidings_core::{
    ConsumeContext, Endpoint, Envelope, HandlerError, Message, SendOptions, TestHarness,
};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "otel.order-placed", kind = "event")]
struct OrderPlaced {
    order_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "otel.reserve-stock", kind = "command")]
struct ReserveStock {
    order_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "otel.stock-reserved", kind = "event")]
struct StockReserved {
    order_id: u32,
}

const WAIT: Duration = Duration::from_secs(60);

fn finished(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter.get_finished_spans().unwrap()
}

/// What a span is: its `messaging.operation.type` (`send`, `process`), else its name
/// (`tidings.handle`).
fn op(span: &SpanData) -> String {
    match attr(span, attributes::OPERATION_TYPE) {
        t if t.is_empty() => span.name.to_string(),
        t => t,
    }
}

/// Producer spans.
const SEND: &str = attributes::SEND;
/// Receive (process) spans.
const PROCESS: &str = attributes::PROCESS;

fn named(exporter: &InMemorySpanExporter, what: &str) -> Vec<SpanData> {
    finished(exporter)
        .into_iter()
        .filter(|s| op(s) == what)
        .collect()
}

fn attr(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
        .unwrap_or_default()
}

fn traceparent(e: &Envelope) -> TraceContext {
    TraceContext::parse(e.header(headers::TRACEPARENT).unwrap()).unwrap()
}

/// Exactly one span of `what` (see [`op`]) whose attribute `key` is `value`.
fn one<'a>(spans: &'a [SpanData], what: &str, key: &str, value: &str) -> &'a SpanData {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| op(s) == what && attr(s, key) == value)
        .collect();
    assert_eq!(found.len(), 1, "one {what} span with {key} = {value}");
    found[0]
}

fn id(span: &SpanData) -> SpanId {
    span.span_context.span_id()
}

/// Asserts `child`'s exported parent is `parent` (and whether the link crossed the wire).
fn assert_child(child: &SpanData, parent: &SpanData, remote: bool) {
    assert_eq!(
        child.parent_span_id,
        id(parent),
        "{} ({}) is a child of {} ({})",
        child.name,
        attr(child, "endpoint"),
        parent.name,
        attr(parent, "endpoint"),
    );
    assert_eq!(
        child.parent_span_is_remote, remote,
        "{} remote parent",
        child.name
    );
}

fn provider() -> (InMemorySpanExporter, SdkTracerProvider) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    (exporter, provider)
}

/// Sends this thread's spans to `provider` until the guard drops.
fn install(provider: &SdkTracerProvider) -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tidings-test")));
    tracing::subscriber::set_default(subscriber)
}

#[tokio::test(start_paused = true)]
async fn three_hops_export_one_trace_tree() {
    let (exporter, provider) = provider();
    let _guard = install(&provider);

    let h = TestHarness::start(|b| {
        b.endpoint(
            Endpoint::new("orders")
                .handle_fn(|m: OrderPlaced, ctx: ConsumeContext| async move {
                    ctx.send(&ReserveStock {
                        order_id: m.order_id,
                    })
                    .await?;
                    Ok(())
                })
                .sends::<ReserveStock>(),
        )
        .endpoint(
            Endpoint::new("inventory")
                .handle_fn(|m: ReserveStock, ctx: ConsumeContext| async move {
                    ctx.publish(&StockReserved {
                        order_id: m.order_id,
                    })
                    .await?;
                    Ok(())
                })
                .sends::<StockReserved>(),
        )
        .endpoint(Endpoint::new("analytics").handle_fn(|_: OrderPlaced, _| async { Ok(()) }))
        .endpoint(Endpoint::new("shipping").handle_fn(|_: StockReserved, _| async { Ok(()) }))
        .sends::<OrderPlaced>()
    })
    .await
    .unwrap();
    h.bus
        .publish_with(
            &OrderPlaced { order_id: 7 },
            SendOptions::default().correlation_id("corr-7"),
        )
        .await
        .unwrap();
    // 3 producer spans; orders + analytics (hop 1), inventory (hop 2), shipping (hop 3):
    // 4 receive and 4 handle spans.
    assert!(
        h.wait_until(WAIT, |_| named(&exporter, PROCESS).len() == 4
            && named(&exporter, spans::HANDLE).len() == 4)
            .await,
        "four receive and four handle spans exported, got {:?}",
        finished(&exporter)
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    );
    provider.force_flush().unwrap();
    let all = finished(&exporter);
    assert_eq!(
        all.len(),
        11,
        "{:?}",
        all.iter().map(|s| &s.name).collect::<Vec<_>>()
    );

    let publish_placed = one(&all, SEND, "message_type", "otel.order-placed");
    let send_reserve = one(&all, SEND, "message_type", "otel.reserve-stock");
    let publish_reserved = one(&all, SEND, "message_type", "otel.stock-reserved");
    let receive = |ep| one(&all, PROCESS, "endpoint", ep);
    let handle = |ep| one(&all, spans::HANDLE, "endpoint", ep);

    // One trace: the one the bus's publish span started.
    let placed = traceparent(&h.envelopes::<OrderPlaced>()[0]);
    let trace = TraceId::from(placed.trace_id);
    for s in &all {
        assert_eq!(s.span_context.trace_id(), trace, "{} in the trace", s.name);
        assert_eq!(
            attr(s, "trace_id"),
            format!("{:032x}", placed.trace_id),
            "{}",
            s.name
        );
        assert_eq!(
            attr(s, "messaging.message.conversation_id"),
            "corr-7",
            "{}",
            s.name
        );
        assert!(
            attr(s, "correlation_id").is_empty(),
            "no plain correlation_id"
        );
        assert!(attr(s, "message_id").is_empty(), "no plain message_id");
        assert!(attr(s, "messaging.operation").is_empty(), "deprecated");
    }
    assert_eq!(
        publish_placed.parent_span_id,
        SpanId::INVALID,
        "the bus publish is the root"
    );

    // The tree, edge by edge; producer → consumer edges cross the wire (remote parents).
    assert_child(receive("orders"), publish_placed, true);
    assert_child(receive("analytics"), publish_placed, true);
    assert_child(handle("orders"), receive("orders"), false);
    assert_child(handle("analytics"), receive("analytics"), false);
    assert_child(send_reserve, handle("orders"), false);
    assert_child(receive("inventory"), send_reserve, true);
    assert_child(handle("inventory"), receive("inventory"), false);
    assert_child(publish_reserved, handle("inventory"), false);
    assert_child(receive("shipping"), publish_reserved, true);
    assert_child(handle("shipping"), receive("shipping"), false);

    // The ids on the wire are the exported producer spans'.
    let reserve = traceparent(&h.envelopes::<ReserveStock>()[0]);
    let reserved = traceparent(&h.envelopes::<StockReserved>()[0]);
    assert_eq!(SpanId::from(placed.span_id), id(publish_placed));
    assert_eq!(SpanId::from(reserve.span_id), id(send_reserve));
    assert_eq!(SpanId::from(reserved.span_id), id(publish_reserved));

    // Messaging fields (OpenTelemetry semantic conventions), span names and kinds.
    for (span, destination, message) in [
        (
            publish_placed,
            "otel.order-placed",
            h.envelopes::<OrderPlaced>()[0].id,
        ),
        (
            send_reserve,
            "inventory",
            h.envelopes::<ReserveStock>()[0].id,
        ),
        (
            publish_reserved,
            "otel.stock-reserved",
            h.envelopes::<StockReserved>()[0].id,
        ),
    ] {
        assert_eq!(span.name, format!("send {destination}"));
        assert_eq!(span.span_kind, SpanKind::Producer);
        assert_eq!(attr(span, "messaging.system"), "memory");
        assert_eq!(attr(span, "messaging.operation.type"), "send");
        assert_eq!(attr(span, "messaging.operation.name"), "send");
        assert_eq!(attr(span, "messaging.destination.name"), destination);
        assert_eq!(attr(span, "messaging.message.id"), message.to_string());
    }
    assert_eq!(
        attr(send_reserve, "endpoint"),
        "orders",
        "the sending endpoint"
    );
    assert_eq!(attr(publish_reserved, "endpoint"), "inventory");
    for ep in ["orders", "analytics", "inventory", "shipping"] {
        let (r, hd) = (receive(ep), handle(ep));
        assert_eq!(r.name, format!("process {ep}"));
        assert_eq!(r.span_kind, SpanKind::Consumer);
        assert_eq!(attr(r, "messaging.system"), "memory");
        assert_eq!(attr(r, "messaging.operation.type"), "process");
        assert_eq!(attr(r, "messaging.operation.name"), "process");
        assert_eq!(attr(r, "messaging.destination.name"), ep);
        assert_eq!(hd.name, spans::HANDLE);
        assert_eq!(hd.span_kind, SpanKind::Internal);
        assert_eq!(attr(hd, "attempt"), "1");
        assert!(attr(r, "error.type").is_empty(), "{ep} succeeded");
        for key in [
            "messaging.message.id",
            "messaging.message.conversation_id",
            "message_type",
        ] {
            assert_eq!(attr(r, key), attr(hd, key), "{ep}: {key}");
            assert!(!attr(hd, key).is_empty(), "{ep}: {key}");
        }
        assert_eq!(r.status, Status::Unset, "{ep} succeeded");
    }
    assert_eq!(
        attr(receive("inventory"), "messaging.message.id"),
        attr(send_reserve, "messaging.message.id")
    );
    assert!(h.stop().await);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_a_handle_span_under_one_receive() {
    let (exporter, provider) = provider();
    let _guard = install(&provider);

    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let h = TestHarness::start(move |b| {
        b.endpoint(
            Endpoint::new("flaky")
                .retry(Intervals::fixed(2, Duration::from_millis(10)))
                .handle_fn(move |_: OrderPlaced, _| {
                    let seen = seen.clone();
                    async move {
                        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                            return Err(HandlerError::transient("first attempt fails"));
                        }
                        Ok(())
                    }
                }),
        )
        .sends::<OrderPlaced>()
    })
    .await
    .unwrap();
    h.bus.publish(&OrderPlaced { order_id: 1 }).await.unwrap();
    assert!(
        h.wait_until(WAIT, |_| named(&exporter, PROCESS).len() == 1)
            .await,
        "one receive span exported"
    );
    provider.force_flush().unwrap();
    let receive = &named(&exporter, PROCESS)[0];
    let mut handles = named(&exporter, spans::HANDLE);
    handles.sort_by_key(|s| attr(s, "attempt"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(handles.len(), 2, "one handle span per attempt");
    assert_eq!(
        handles
            .iter()
            .map(|s| attr(s, "attempt"))
            .collect::<Vec<_>>(),
        ["1", "2"]
    );
    for hd in &handles {
        assert_child(hd, receive, false);
    }
    assert!(
        matches!(handles[0].status, Status::Error { .. }),
        "{:?}",
        handles[0].status
    );
    assert_eq!(attr(&handles[0], "error"), "first attempt fails");
    assert_eq!(attr(&handles[0], "error.type"), "handler-failed");
    assert_eq!(handles[1].status, Status::Unset);
    assert_eq!(receive.status, Status::Unset, "the delivery succeeded");
    assert!(h.stop().await);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "otel.quote", kind = "command")]
struct Quote {
    sku: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "otel.quoted", kind = "event")]
struct Quoted {
    cents: u32,
}

#[tokio::test(start_paused = true)]
async fn request_and_response_are_producer_spans_of_one_trace() {
    let (exporter, provider) = provider();
    let _guard = install(&provider);

    let h = TestHarness::start(|b| {
        b.endpoint(
            Endpoint::new("pricing").handle_fn(|q: Quote, ctx: ConsumeContext| async move {
                ctx.respond(&Quoted { cents: q.sku * 10 }).await?;
                Ok(())
            }),
        )
    })
    .await
    .unwrap();
    let answer: Quoted = h
        .bus
        .request(&Quote { sku: 7 }, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answer, Quoted { cents: 70 });
    assert!(
        h.wait_until(WAIT, |_| named(&exporter, PROCESS).len() == 1)
            .await,
        "the request's receive span exported"
    );
    provider.force_flush().unwrap();
    let all = finished(&exporter);
    let request = one(&all, SEND, "message_type", "otel.quote");
    let receive = one(&all, PROCESS, "message_type", "otel.quote");
    let handle = one(&all, spans::HANDLE, "message_type", "otel.quote");
    let response = one(&all, SEND, "message_type", "otel.quoted");
    assert_eq!(request.span_kind, SpanKind::Producer);
    assert_eq!(response.span_kind, SpanKind::Producer);
    assert_eq!(attr(request, "messaging.destination.name"), "pricing");
    assert!(
        attr(response, "messaging.destination.name").contains(".replies."),
        "the response goes to the requester's reply queue: {}",
        attr(response, "messaging.destination.name")
    );
    assert_child(receive, request, true);
    assert_child(handle, receive, false);
    assert_child(response, handle, false);
    let trace: TraceId = request.span_context.trace_id();
    assert_eq!(response.span_context.trace_id(), trace, "one trace");
    assert!(h.stop().await);
}
