//! OpenTelemetry bridge (feature `otel`).
//!
//! With this feature on, Tidings' `tracing` spans become real OpenTelemetry spans whenever
//! the subscriber has a [`tracing_opentelemetry`] layer:
//!
//! - each `tidings.receive` span (exported as `process {queue}`) takes the consumed
//!   envelope's W3C `traceparent` as its remote OpenTelemetry parent, so a message flow
//!   across endpoints (and processes) is one exported trace tree: send → process → handle
//!   → send → process → … (`tracing` span names in
//!   [`telemetry::spans`](crate::telemetry::spans), exported names and attributes per the
//!   messaging semantic conventions in [`telemetry`](crate::telemetry));
//! - a message's `traceparent` names the exported `send {destination}` span
//!   that sent it (same trace id, its span id), so the ids on the wire are the ids the
//!   backend sees. Without a valid OpenTelemetry span (no layer installed, or no span), the
//!   task-local context of [`telemetry`](crate::telemetry) is used as before.
//!
//! [`init_otlp`] installs a global subscriber (env filter + fmt + OpenTelemetry layer)
//! exporting over OTLP/gRPC; call it from inside a Tokio runtime (the tonic client needs
//! one) and keep the returned [`OtelGuard`] alive until shutdown. `tests/otlp.rs` runs it
//! against an in-process OTLP/gRPC collector.
//!
//! To keep your own subscriber, wire the layer yourself:
//!
//! ```no_run
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! let exporter = opentelemetry_otlp::SpanExporter::builder()
//!     .with_tonic()
//!     .build()?; // endpoint from OTEL_EXPORTER_OTLP_ENDPOINT, default localhost:4317
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
//!     .with_batch_exporter(exporter)
//!     .build();
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("my-service")))
//!     .try_init()?;
//! // ... run the bus; on shutdown: provider.shutdown()?;
//! # Ok(()) }
//! ```

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::telemetry::TraceContext;
use crate::{Error, Result};

/// Makes `parent` (a consumed message's `traceparent`) the remote OpenTelemetry parent of
/// `span` (not yet entered), and returns the span's own context when it is a valid
/// OpenTelemetry span (an OpenTelemetry layer is installed and the span is enabled).
pub(crate) fn continue_trace(
    span: &tracing::Span,
    parent: Option<TraceContext>,
) -> Option<TraceContext> {
    if let Some(p) = parent {
        let remote = SpanContext::new(
            TraceId::from(p.trace_id),
            SpanId::from(p.span_id),
            if p.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        // Errors mean "no OpenTelemetry layer" or "span disabled": nothing to bridge.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    from_otel(span.context().span().span_context())
}

/// The current OpenTelemetry span context (the current `tracing` span's, else the
/// OpenTelemetry current context's), when valid.
pub(crate) fn current() -> Option<TraceContext> {
    from_otel(tracing::Span::current().context().span().span_context())
        .or_else(|| from_otel(opentelemetry::Context::current().span().span_context()))
}

fn from_otel(sc: &SpanContext) -> Option<TraceContext> {
    sc.is_valid().then(|| TraceContext {
        trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
        sampled: sc.is_sampled(),
    })
}

/// Keeps the OTLP pipeline of [`init_otlp`] alive; dropping it flushes and shuts it down.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the exporter down"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// The tracer provider (for extra tracers or an explicit flush).
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OpenTelemetry tracer provider shutdown failed");
        }
    }
}

/// Installs a global `tracing` subscriber exporting spans over OTLP/gRPC to `endpoint`
/// (e.g. `http://localhost:4317`) as service `service_name`, plus a fmt layer filtered by
/// `RUST_LOG` (default `info`). Call from inside a Tokio runtime: the tonic client's
/// connection task runs there, and the batch exporter's thread waits on it, so flush or drop
/// the guard where that runtime can still run (a multi-threaded runtime, or
/// `spawn_blocking`): a blocking flush on a current-thread runtime's own thread stalls
/// until the export timeout (10 s by default) and then fails.
///
/// An empty `endpoint` defers to the exporter's environment: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
/// then `OTEL_EXPORTER_OTLP_ENDPOINT`, then `http://localhost:4317`; `OTEL_EXPORTER_OTLP_HEADERS`
/// and `OTEL_EXPORTER_OTLP_TIMEOUT` apply either way.
///
/// Fails with [`Error::Config`] if the exporter cannot be built or a global subscriber is
/// already set.
pub fn init_otlp(endpoint: &str, service_name: &str) -> Result<OtelGuard> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| Error::Config(format!("OTLP exporter for {endpoint}: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_string())
                .build(),
        )
        .build();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tidings")))
        .try_init()
        .map_err(|e| Error::Config(format!("installing the tracing subscriber: {e}")))?;
    Ok(OtelGuard { provider })
}
