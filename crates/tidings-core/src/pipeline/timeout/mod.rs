//! A time limit on the handler: [`Timeout`] fails an attempt that runs longer than its
//! limit with a transient [`FaultReason::TimedOut`](crate::FaultReason::TimedOut) error
//! (so it is retried and, when retries run out, dead-lettered with reason `timed-out`).

mod future;
mod layer;

use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

pub use future::ResponseFuture;
pub use layer::TimeoutLayer;

use super::Consume;
use crate::handler::HandlerError;

/// Limits each call of the inner step to a duration; made by [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Timeout<S> {
    /// Wraps `inner`, limiting each call to `limit`.
    pub fn new(inner: S, limit: Duration) -> Self {
        Timeout { inner, limit }
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

impl<S> Service<Consume> for Timeout<S>
where
    S: Service<Consume, Response = (), Error = HandlerError>,
{
    type Response = ();
    type Error = HandlerError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        ResponseFuture::new(self.inner.call(req), self.limit)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use tokio::time::Instant;
    use tower::{service_fn, Layer, ServiceExt};

    use super::*;
    use crate::pipeline::BoxPipeline;
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

    #[tokio::test(start_paused = true)]
    async fn a_hanging_handler_times_out() {
        let hang =
            service_fn(|_req: Consume| futures::future::pending::<Result<(), HandlerError>>());
        let svc = BoxPipeline::new(TimeoutLayer::new(Duration::from_secs(5)).layer(hang));
        let start = Instant::now();
        let err = svc.oneshot(request()).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(err.reason(), FaultReason::TimedOut);
        assert_eq!(err.kind(), ErrorKind::Transient);
        assert_eq!(err.message(), "handler did not finish within 5s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_within_the_limit_passes_its_result_through() {
        let slow = service_fn(|_req: Consume| async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Err::<(), _>(HandlerError::permanent("bad input"))
        });
        let svc = TimeoutLayer::new(Duration::from_secs(5)).layer(slow);
        let err = svc.oneshot(request()).await.unwrap_err();
        assert_eq!(err.message(), "bad input");
        assert!(err.is_permanent());

        let ok = service_fn(|_req: Consume| async { Ok::<(), HandlerError>(()) });
        let svc = TimeoutLayer::new(Duration::from_millis(1)).layer(ok);
        svc.oneshot(request()).await.unwrap();
    }
}
