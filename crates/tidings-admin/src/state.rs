//! [`AdminState`]: what the admin routes work on — a transport, optionally a Prometheus
//! handle, a bearer token, the bus's topology report and a message journal — and the
//! sampler's config and history (see [`SamplerConfig`]).

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tidings_core::saga::SagaQueries;
use tidings_core::topology::TopologyReport;
use tidings_core::transport::Transport;

use crate::sampler::Sampling;
use crate::{MessageJournal, SamplerConfig};

/// Shared state of the admin router. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) topology: Option<Arc<TopologyReport>>,
    pub(crate) journal: Option<MessageJournal>,
    pub(crate) allowed_hosts: Arc<[String]>,
    pub(crate) sagas: Option<Arc<dyn SagaQueries>>,
    pub(crate) sampling: Arc<Sampling>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("transport", &self.transport.name())
            .field("metrics", &self.metrics.is_some())
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("topology", &self.topology.is_some())
            .field("journal", &self.journal)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("sagas", &self.sagas.is_some())
            .field("sampler", &self.sampling.config)
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
            topology: None,
            journal: None,
            allowed_hosts: Arc::from(Vec::new()),
            sagas: None,
            sampling: Arc::new(Sampling::new(SamplerConfig::default())),
        }
    }

    /// How the sampler behind the dashboard's rates and charts, and the continuously set
    /// queue gauges, runs ([`SamplerConfig::default`]: rates every second, queue stats
    /// every 5 s, 10 minutes of history; [`SamplerConfig::disabled`] for none). It starts
    /// when the [`router`](crate::router) is built (inside a tokio runtime) and stops when
    /// the last clone of this state is dropped. Call it before the `router`.
    pub fn sampler(mut self, config: SamplerConfig) -> Self {
        self.sampling = Arc::new(Sampling::new(config));
        self
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

    /// Serves `GET /topology` from `report` (`bus.topology().clone()`).
    pub fn topology(mut self, report: TopologyReport) -> Self {
        self.topology = Some(Arc::new(report));
        self
    }

    /// Answers `GET /messages?correlation_id=..` from `journal` (install the same journal
    /// on the bus with `BusBuilder::observer(journal.observer())`) as well as from the
    /// error queues.
    pub fn journal(mut self, journal: MessageJournal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Host names (no port) accepted in the `Host` header when no token is set, besides
    /// the loopback names (`localhost`, `*.localhost`, `127.0.0.0/8`, `::1`). Without a
    /// token any other host is refused, which defeats DNS rebinding; allow a name only
    /// when the admin API is reached through it on a trusted network (a reverse proxy).
    ///
    /// ```
    /// # fn demo(t: std::sync::Arc<dyn tidings_core::transport::Transport>) {
    /// let state = tidings_admin::AdminState::new(t).allow_hosts(["orders.internal"]);
    /// # }
    /// ```
    pub fn allow_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_hosts = hosts
            .into_iter()
            .map(|h| h.into().to_ascii_lowercase())
            .collect();
        self
    }

    /// Serves `GET /sagas` and `GET /sagas/{saga}/{key}` (and the dashboard's saga table)
    /// from `sagas`: a saga store, e.g. `tidings_sqlite::SqliteSagaQueries`.
    pub fn sagas(mut self, sagas: Arc<dyn SagaQueries>) -> Self {
        self.sagas = Some(sagas);
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
