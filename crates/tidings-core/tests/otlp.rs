//! Feature `otel`: [`otel::init_otlp`] exports Tidings' spans over OTLP/gRPC. The collector
//! is an in-process tonic `TraceService` on 127.0.0.1:0 that decodes each
//! `ExportTraceServiceRequest`; a publish → handle → send → handle flow must arrive there as
//! one trace with the publish/send/receive/handle spans linked parent to child.
//!
//! Its own test binary: `init_otlp` installs the process-wide `tracing` subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::{Deserialize, Serialize};
use tidings_core::telemetry::spans;
use tidings_core::{otel, ConsumeContext, Endpoint, Message, TestHarness};
use tonic::transport::server::TcpIncoming;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "otlp.order-placed", kind = "event")]
struct OrderPlaced {
    order_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "otlp.reserve-stock", kind = "command")]
struct ReserveStock {
    order_id: u32,
}

/// One exported resource: the exporting service's name and its spans.
type Export = (String, Vec<Span>);

/// What the collector received, per resource of each request.
#[derive(Clone, Default)]
struct Collector {
    received: Arc<Mutex<Vec<Export>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.received.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .map(|r| string_attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            let spans = rs.scope_spans.into_iter().flat_map(|s| s.spans).collect();
            received.push((service, spans));
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn string_attr(attrs: &[KeyValue], key: &str) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

fn one<'a>(spans: &'a [Span], name: &str, endpoint: &str) -> &'a Span {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && string_attr(&s.attributes, "endpoint") == endpoint)
        .collect();
    assert_eq!(found.len(), 1, "one {name} span of endpoint {endpoint}");
    found[0]
}

fn assert_child(child: &Span, parent: &Span) {
    assert_eq!(
        child.parent_span_id, parent.span_id,
        "{} is a child of {}",
        child.name, parent.name
    );
}

// Multi-threaded: the batch exporter's thread waits on the tonic client, whose connection
// task runs on this runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_otlp_exports_the_flow_to_a_grpc_collector() -> anyhow::Result<()> {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let guard = otel::init_otlp(&format!("http://{addr}"), "otlp-test")?;
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
        .endpoint(Endpoint::new("inventory").handle_fn(|_: ReserveStock, _| async { Ok(()) }))
        .sends::<OrderPlaced>()
    })
    .await?;
    h.bus.publish(&OrderPlaced { order_id: 3 }).await?;
    assert!(
        h.wait_until(Duration::from_secs(10), |h| h
            .consumed(ReserveStock::NAME)
            .len()
            == 1)
            .await,
        "the command was handled"
    );
    // Stopping waits for the handlers, so every span has ended; then flush the batch.
    assert!(h.stop().await);
    let provider = guard.provider().clone();
    tokio::task::spawn_blocking(move || provider.force_flush()).await??;

    let received = collector.received.lock().unwrap().clone();
    assert!(!received.is_empty(), "the collector got an export request");
    for (service, _) in &received {
        assert_eq!(service, "otlp-test", "service.name resource");
    }
    let spans: Vec<Span> = received.into_iter().flat_map(|(_, s)| s).collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    // Span names of the messaging conventions: `{operation} {destination}`.
    let publish = one(&spans, "send otlp.order-placed", "harness");
    let receive_orders = one(&spans, "process orders", "orders");
    let handle_orders = one(&spans, spans::HANDLE, "orders");
    let send = one(&spans, "send inventory", "orders");
    let receive_inventory = one(&spans, "process inventory", "inventory");
    let handle_inventory = one(&spans, spans::HANDLE, "inventory");
    assert_eq!(spans.len(), 6, "{names:?}");

    for s in &spans {
        assert_eq!(s.trace_id, publish.trace_id, "{} in the trace", s.name);
        assert_eq!(s.trace_id.len(), 16);
    }
    assert!(
        publish.parent_span_id.is_empty(),
        "the bus publish is the root"
    );
    assert_child(receive_orders, publish);
    assert_child(handle_orders, receive_orders);
    assert_child(send, handle_orders);
    assert_child(receive_inventory, send);
    assert_child(handle_inventory, receive_inventory);
    assert_eq!(publish.kind, SpanKind::Producer as i32);
    assert_eq!(send.kind, SpanKind::Producer as i32);
    assert_eq!(receive_inventory.kind, SpanKind::Consumer as i32);
    assert_eq!(
        string_attr(&send.attributes, "messaging.destination.name"),
        "inventory"
    );
    assert_eq!(string_attr(&handle_inventory.attributes, "attempt"), "1");
    for (span, operation) in [
        (publish, "send"),
        (send, "send"),
        (receive_orders, "process"),
        (receive_inventory, "process"),
    ] {
        let a = |k| string_attr(&span.attributes, k);
        assert_eq!(a("messaging.operation.type"), operation, "{}", span.name);
        assert_eq!(a("messaging.operation.name"), operation, "{}", span.name);
        assert_eq!(a("messaging.system"), "memory", "{}", span.name);
        assert!(!a("messaging.message.id").is_empty(), "{}", span.name);
    }

    drop(guard);
    server.abort();
    Ok(())
}
