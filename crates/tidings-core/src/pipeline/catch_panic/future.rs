//! [`ResponseFuture`]: the inner future under `catch_unwind`, or the error of a panic
//! that happened while calling the service.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::CatchUnwind;
use futures::FutureExt;
use pin_project_lite::pin_project;

use crate::handler::HandlerError;
use crate::ErrorKind;

pin_project! {
    /// The future of a [`CatchPanic`](super::CatchPanic) call.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            future: CatchUnwind<AssertUnwindSafe<F>>,
            kind: ErrorKind,
        },
        Panicked {
            error: Option<HandlerError>,
        },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Running { .. } => "running",
            State::Panicked { .. } => "panicked",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(super) fn running(future: F, kind: ErrorKind) -> Self {
        ResponseFuture {
            state: State::Running {
                future: AssertUnwindSafe(future).catch_unwind(),
                kind,
            },
        }
    }

    pub(super) fn panicked(error: HandlerError) -> Self {
        ResponseFuture {
            state: State::Panicked { error: Some(error) },
        }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    type Output = Result<(), HandlerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Running { future, kind } => match future.poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(out)) => Poll::Ready(out),
                Poll::Ready(Err(payload)) => {
                    Poll::Ready(Err(super::panic_error(payload.as_ref(), *kind)))
                }
            },
            StateProj::Panicked { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Ready(Err(HandlerError::transient(
                    "catch-panic future polled after completion",
                ))),
            },
        }
    }
}
