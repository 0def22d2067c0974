//! Operating Tidings over HTTP: an admin [`router`] to mount in any axum app (queues, dead
//! letters: list / show / replay / purge, a correlation id's messages in order, sagas, the bus's
//! topology, Prometheus metrics, health probes, a small dashboard), [`serve`] to run it on
//! its own port, a [`MessageJournal`] (a bounded in-memory record of the deliveries this
//! process consumed) and a [`DeadLetterMonitor`] that raises [`DeadLetterAlert`]s.
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
mod dashboard;
mod error;
pub mod guard;
mod journal;
mod metrics;
mod monitor;
mod query;
mod request;
mod routes;
mod sagas;
mod server;
mod state;
mod timeline;
mod view;

pub use error::AdminError;
pub use journal::{JournalEntry, MessageJournal, DEFAULT_JOURNAL_CAPACITY, MAX_ERROR_CHARS};
pub use metrics::{install_recorder, record_queue_stats};
pub use monitor::{DeadLetterAlert, DeadLetterMonitor, MonitorConfig, ALERT_GAUGE};
pub use query::{parse_duration, parse_ids, parse_since, DlqFilter};
pub use request::{PurgeRequest, ReplayRequest};
pub use routes::{router, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use server::{serve, AdminConfig, AdminServer};
pub use state::AdminState;
pub use timeline::{Timeline, TimelineEntry, TimelineSource};
pub use view::{body_value, DeadLetterView, FaultSummary, QueueView};
