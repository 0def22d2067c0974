//! Feature `otel`: the `tidings.consume` spans of a three-hop flow (event → command → event)
//! are exported as one OpenTelemetry trace tree, and the `traceparent`s on the wire name the
//! exported spans.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde::{Deserialize, Serialize};
use tidings_core::envelope::headers;
use tidings_core::telemetry::TraceContext;
use tidings_core::{ConsumeContext, Endpoint, Envelope, Message, SendOptions, TestHarness};
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

fn consume_spans(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == "tidings.consume")
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

/// Whether `ancestor` is reached from `span` by following exported parent links.
fn chains_to(spans: &HashMap<SpanId, SpanData>, span: &SpanData, ancestor: SpanId) -> bool {
    let mut parent = span.parent_span_id;
    for _ in 0..16 {
        if parent == ancestor {
            return true;
        }
        match spans.get(&parent) {
            Some(p) => parent = p.parent_span_id,
            None => return false,
        }
    }
    false
}

#[tokio::test(start_paused = true)]
async fn three_hops_export_one_trace_tree() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tidings-test")));
    let _guard = tracing::subscriber::set_default(subscriber);

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
    // orders + analytics (hop 1), inventory (hop 2), shipping (hop 3).
    assert!(
        h.wait_until(WAIT, |_| consume_spans(&exporter).len() == 4)
            .await,
        "four consume spans exported, got {}",
        consume_spans(&exporter).len()
    );
    provider.force_flush().unwrap();
    let spans = consume_spans(&exporter);
    let by_type = |t: &str| -> Vec<&SpanData> {
        spans
            .iter()
            .filter(|s| attr(s, "message_type") == t)
            .collect()
    };
    let hop1: Vec<_> = by_type("otel.order-placed");
    assert_eq!(hop1.len(), 2, "orders and analytics");
    let orders = *hop1
        .iter()
        .find(|s| attr(s, "endpoint") == "orders")
        .unwrap();
    let hop2 = by_type("otel.reserve-stock");
    let hop3 = by_type("otel.stock-reserved");
    assert_eq!((hop2.len(), hop3.len()), (1, 1));
    let (hop2, hop3) = (hop2[0], hop3[0]);

    // One trace: the one the published event started.
    let placed = traceparent(&h.envelopes::<OrderPlaced>()[0]);
    let trace = TraceId::from(placed.trace_id);
    for s in &spans {
        assert_eq!(s.span_context.trace_id(), trace, "{} in the trace", s.name);
        assert_eq!(attr(s, "trace_id"), format!("{:032x}", placed.trace_id));
    }
    // Hop 1 continues the publisher's remote span.
    for s in &hop1 {
        assert_eq!(s.parent_span_id, SpanId::from(placed.span_id));
        assert!(s.parent_span_is_remote);
    }
    // Hops 2 and 3 are children (through the sending span) of the previous hop.
    let all: HashMap<SpanId, SpanData> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    assert!(
        chains_to(&all, hop2, orders.span_context.span_id()),
        "hop 2's parent chains to hop 1 (orders)"
    );
    assert!(
        chains_to(&all, hop3, hop2.span_context.span_id()),
        "hop 3's parent chains to hop 2"
    );
    // The ids on the wire are the exported ones: each sent `traceparent` is the sending span.
    let reserve = traceparent(&h.envelopes::<ReserveStock>()[0]);
    let reserved = traceparent(&h.envelopes::<StockReserved>()[0]);
    assert_eq!(SpanId::from(reserve.span_id), orders.span_context.span_id());
    assert_eq!(SpanId::from(reserved.span_id), hop2.span_context.span_id());
    assert_eq!(hop2.parent_span_id, orders.span_context.span_id());
    assert_eq!(hop3.parent_span_id, hop2.span_context.span_id());
    assert!(h.stop().await);
}
