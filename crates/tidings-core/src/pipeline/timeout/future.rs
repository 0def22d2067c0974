//! [`ResponseFuture`]: the inner call raced against a [`Sleep`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::handler::HandlerError;
use crate::{ErrorKind, FaultReason};

pin_project! {
    /// The future of a [`Timeout`](super::Timeout) call.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        limit: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, limit: Duration) -> Self {
        ResponseFuture {
            inner,
            sleep: tokio::time::sleep(limit),
            limit,
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    type Output = Result<(), HandlerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(out);
        }
        match this.sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(HandlerError::with_reason(
                FaultReason::TimedOut,
                ErrorKind::Transient,
                format!("handler did not finish within {:?}", this.limit),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}
