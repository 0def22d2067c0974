//! [`SpanFuture`]: an inner step's future, run in its span, recording a failure there —
//! a named type instead of a boxed `async` block, so a delivery costs no allocation here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tracing::instrument::Instrumented;

use crate::handler::HandlerError;

pin_project! {
    /// The future of a [`Trace`](super::Trace) or [`HandleSpan`](super::HandleSpan) call.
    #[derive(Debug)]
    pub struct SpanFuture<F> {
        #[pin]
        inner: Instrumented<F>,
    }
}

impl<F> SpanFuture<F> {
    pub(super) fn new(inner: Instrumented<F>) -> Self {
        SpanFuture { inner }
    }
}

impl<F> Future for SpanFuture<F>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    type Output = Result<(), HandlerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = std::task::ready!(this.inner.as_mut().poll(cx));
        if let Err(e) = &result {
            let span = this.inner.span();
            if !span.is_disabled() {
                super::handle::record_failure(span, e);
            }
        }
        Poll::Ready(result)
    }
}
