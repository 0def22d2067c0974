//! Turns a panicking handler into an error: [`CatchPanic`] catches a panic while calling
//! the inner step or while polling its future, and returns a [`FaultReason::Panicked`]
//! error whose text is `handler panicked: <panic message>`.
//!
//! A panic is a bug, so the error is permanent by default (straight to the error queue,
//! no retries); [`CatchPanicLayer::transient`] makes it retryable instead. The worker
//! survives and keeps handling the next messages.

mod future;
mod layer;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};

use tower::Service;

pub use future::ResponseFuture;
pub use layer::CatchPanicLayer;

use super::Consume;
use crate::handler::HandlerError;
use crate::{ErrorKind, FaultReason};

/// Catches panics of the inner step; made by [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
    kind: ErrorKind,
}

impl<S> CatchPanic<S> {
    /// Wraps `inner`; a caught panic becomes an error of `kind`.
    pub fn new(inner: S, kind: ErrorKind) -> Self {
        CatchPanic { inner, kind }
    }
}

impl<S> Service<Consume> for CatchPanic<S>
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
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => ResponseFuture::running(future, self.kind),
            Err(payload) => ResponseFuture::panicked(panic_error(payload.as_ref(), self.kind)),
        }
    }
}

/// The error for a caught panic with `payload`.
pub(super) fn panic_error(payload: &(dyn Any + Send), kind: ErrorKind) -> HandlerError {
    HandlerError::with_reason(
        FaultReason::Panicked,
        kind,
        format!("handler panicked: {}", panic_message(payload)),
    )
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(panic payload is not a string)"
    }
}
