//! [`CatchPanicLayer`]: wraps a pipeline step in [`CatchPanic`].

use tower::Layer;

use super::CatchPanic;
use crate::ErrorKind;

/// Turns handler panics into `panicked` errors, permanent unless made
/// [`transient`](CatchPanicLayer::transient).
#[derive(Debug, Clone, Copy)]
pub struct CatchPanicLayer {
    kind: ErrorKind,
}

impl Default for CatchPanicLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CatchPanicLayer {
    /// Panics become permanent errors: no retries, straight to the error queue.
    pub fn new() -> Self {
        CatchPanicLayer {
            kind: ErrorKind::Permanent,
        }
    }

    /// Panics become transient errors, retried like any other failure.
    pub fn transient(self) -> Self {
        self.kind(ErrorKind::Transient)
    }

    /// Panics become errors of `kind`.
    pub fn kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic::new(inner, self.kind)
    }
}
