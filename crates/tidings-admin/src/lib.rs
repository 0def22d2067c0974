//! Operating Tidings over HTTP: an admin [`router`] to mount in any axum app (queues, dead
//! letters: list / show / replay / purge, a correlation id's messages in order, sagas, the bus's
//! topology, Prometheus metrics, health probes, a dashboard with per-endpoint rates and
//! charts), [`serve`] to run it on its own port, a [`MessageJournal`] (a bounded in-memory
//! record of the deliveries this process consumed, with running totals per endpoint), a
//! sampler that keeps the charts' history and sets the queue gauges every few seconds
//! ([`SamplerConfig`]) and a [`DeadLetterMonitor`] that raises [`DeadLetterAlert`]s.
//!
//! Mutating routes take JSON only, and without a bearer token only same-origin requests
//! to a loopback host are answered (see [`guard`]); errors are RFC 9457 problem details.
//!
//! ```no_run
//! # async fn demo(transport: std::sync::Arc<dyn tidings_core::transport::Transport>) -> Result<(), tidings_admin::AdminError> {
//! use tidings_admin::{install_recorder, serve, AdminConfig, AdminState};
//! let state = AdminState::new(transport).metrics(install_recorder()?);
//! serve(AdminConfig::new(([127, 0, 0, 1], 9090).into()), state).await
//! # }
//! ```

mod api_error;
mod auth;
mod counters;
mod dashboard;
mod error;
mod groups;
pub mod guard;
mod history;
mod journal;
mod live;
mod metrics;
mod monitor;
mod openapi;
mod promtext;
mod query;
mod request;
mod routes;
mod sagas;
mod sampler;
mod server;
mod state;
mod timeline;
mod view;

pub use api_error::Problem;
pub use counters::EndpointCounters;
pub use error::AdminError;
pub use groups::{
    group, group_key, normalize_error, FailureGroup, FailureGroups, GROUP_SCAN_LIMIT,
};
pub use journal::{JournalEntry, MessageJournal, DEFAULT_JOURNAL_CAPACITY, MAX_ERROR_CHARS};
pub use live::{EndpointSeries, EndpointView, EndpointsView, HistoryView, QueueSeries, RATE_TICKS};
pub use metrics::{install_recorder, record_queue_stats};
pub use monitor::{DeadLetterAlert, DeadLetterMonitor, MonitorConfig, ALERT_GAUGE};
pub use openapi::openapi;
pub use query::{parse_duration, parse_ids, parse_since, DlqFilter};
pub use request::{PurgeRequest, ReplayRequest};
pub use routes::{router, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use sampler::SamplerConfig;
pub use server::{serve, AdminConfig, AdminServer};
pub use state::AdminState;
pub use timeline::{Timeline, TimelineEntry, TimelineSource};
pub use view::{body_value, DeadLetterView, FaultSummary, QueueView};
