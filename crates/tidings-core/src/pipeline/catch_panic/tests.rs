//! Tests of the catch-panic layer.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{ready, BoxFuture};
use tower::{service_fn, Layer, Service, ServiceExt};

use super::CatchPanicLayer;
use crate::handler::HandlerError;
use crate::pipeline::{BoxPipeline, Consume};
use crate::transport::memory::MemoryTransport;
use crate::{ConsumeContext, Envelope, ErrorKind, FaultReason, Producer};

fn request() -> Consume {
    let producer = Producer::new(Arc::new(MemoryTransport::new()), HashMap::new(), None);
    Consume::new(ConsumeContext::new(
        Envelope::new("t", 1, "{}"),
        producer,
        "endpoint",
        1,
    ))
}

/// Panics (inside its future) on odd-numbered calls with a formatted message.
fn panics_every_other_call() -> BoxPipeline {
    let calls = Arc::new(AtomicU32::new(0));
    let inner = service_fn(move |_req: Consume| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n % 2 == 1 {
                panic!("order {n} has no lines");
            }
            Ok::<(), HandlerError>(())
        }
    });
    BoxPipeline::new(CatchPanicLayer::new().layer(inner))
}

#[tokio::test]
async fn panic_text_is_in_the_error_and_the_service_keeps_working() {
    let mut svc = panics_every_other_call();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), FaultReason::Panicked);
    assert!(err.is_permanent(), "a panic is permanent by default");
    assert_eq!(err.message(), "handler panicked: order 1 has no lines");
    svc.ready().await.unwrap().call(request()).await.unwrap();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap_err();
    assert_eq!(err.message(), "handler panicked: order 3 has no lines");
}

#[tokio::test]
async fn static_and_non_string_payloads() {
    let inner = service_fn(|_req: Consume| async {
        panic!("static text");
        #[allow(unreachable_code)]
        Ok::<(), HandlerError>(())
    });
    let err = CatchPanicLayer::new()
        .layer(inner)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(err.message(), "handler panicked: static text");

    let inner = service_fn(|_req: Consume| async {
        std::panic::panic_any(42_u8);
        #[allow(unreachable_code)]
        Ok::<(), HandlerError>(())
    });
    let err = CatchPanicLayer::new()
        .layer(inner)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "handler panicked: (panic payload is not a string)"
    );
}

/// A service whose `call` itself panics on the first call.
#[derive(Clone, Default)]
struct PanicsInCall(Arc<AtomicU32>);

impl Service<Consume> for PanicsInCall {
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Consume) -> Self::Future {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("broken while calling");
        }
        Box::pin(ready(Ok(())))
    }
}

#[tokio::test]
async fn a_panic_while_calling_is_caught_and_can_be_transient() {
    let mut svc = CatchPanicLayer::new()
        .transient()
        .layer(PanicsInCall::default());
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(err.reason(), FaultReason::Panicked);
    assert_eq!(err.message(), "handler panicked: broken while calling");
    svc.ready().await.unwrap().call(request()).await.unwrap();
}
