//! [`TimeoutLayer`]: wraps a pipeline step in [`Timeout`].

use std::time::Duration;

use tower::Layer;

use super::Timeout;

/// Limits each handler attempt to a duration.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Attempts running longer than `limit` fail with a transient `timed-out` error.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.limit)
    }
}
