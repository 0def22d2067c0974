//! [`RetryLayer`]: wraps a pipeline step in [`Retry`].

use std::sync::Arc;

use tower::Layer;

use super::{Retry, RetryPolicy};

/// Applies immediate retries with policy `P` to the service it wraps.
#[derive(Debug)]
pub struct RetryLayer<P> {
    policy: Arc<P>,
}

impl<P> Clone for RetryLayer<P> {
    fn clone(&self) -> Self {
        RetryLayer {
            policy: self.policy.clone(),
        }
    }
}

impl<P: RetryPolicy> RetryLayer<P> {
    /// Retries per `policy`.
    pub fn new(policy: P) -> Self {
        RetryLayer {
            policy: Arc::new(policy),
        }
    }
}

impl<S, P> Layer<S> for RetryLayer<P> {
    type Service = Retry<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_arc(inner, self.policy.clone())
    }
}
