//! [`AdminState`]: what the admin routes work on — a transport, optionally a Prometheus
//! handle and a bearer token.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tidings_core::transport::Transport;

/// Shared state of the admin router. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) token: Option<Arc<str>>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("transport", &self.transport.name())
            .field("metrics", &self.metrics.is_some())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AdminState {
    /// State over `transport`: no metrics, no token.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        AdminState {
            transport,
            metrics: None,
            token: None,
        }
    }

    /// Serves `GET /metrics` from `handle` (see [`install_recorder`](crate::install_recorder)).
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Requires `Authorization: Bearer <token>` on every route but `/`, `/healthz`, `/readyz`.
    /// An empty token counts as none.
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty()).map(Arc::from);
        self
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Whether a bearer token is required.
    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }
}
