//! [`CircuitBreakerLayer`]: wraps a pipeline step in a [`CircuitBreaker`].

use tower::Layer;

use super::{BreakerConfig, CircuitBreaker};

/// Puts a circuit breaker in front of the service it wraps.
///
/// Each [`Layer::layer`] call makes a new breaker; clones of the resulting service share
/// it. Wrap an endpoint's pipeline once and clone it per worker: one breaker per endpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct CircuitBreakerLayer {
    config: BreakerConfig,
}

impl CircuitBreakerLayer {
    /// A breaker configured by `config`.
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreakerLayer { config }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.config)
    }
}
