//! [`SagaQueries`]: what operators ask about sagas — list by state and age (oldest first,
//! so stuck ones show at the top), show one. Every saga store implements it; the admin API
//! and CLI build on it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::record::{SagaRecord, SagaStatus};

/// Default page size of [`SagaQuery`].
pub const DEFAULT_LIMIT: usize = 100;

/// Which sagas to list. Results are ordered by last update, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SagaQuery {
    /// Only this saga (definition name).
    pub saga: Option<String>,
    /// Only instances in this state ([`SagaState::name`](super::SagaState::name)).
    pub state: Option<String>,
    /// Only active or only completed instances.
    pub status: Option<SagaStatus>,
    /// Only instances not updated since this time (stuck ones).
    pub updated_before: Option<DateTime<Utc>>,
    /// Rows to skip (paging).
    pub offset: u64,
    /// Page size; 0 means [`DEFAULT_LIMIT`].
    pub limit: usize,
}

impl SagaQuery {
    /// The page size to use.
    pub fn limit(&self) -> usize {
        if self.limit == 0 {
            DEFAULT_LIMIT
        } else {
            self.limit
        }
    }

    /// Whether `r` passes the filters (for in-memory stores).
    pub fn matches(&self, r: &SagaRecord) -> bool {
        self.saga.as_ref().is_none_or(|s| *s == r.saga)
            && self.state.as_ref().is_none_or(|s| *s == r.state)
            && self.status.is_none_or(|s| s == r.status)
            && self.updated_before.is_none_or(|t| r.updated_at < t)
    }
}

/// One line of a saga listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaSummary {
    /// Saga name.
    pub saga: String,
    /// Correlation key.
    pub key: String,
    /// State name.
    pub state: String,
    /// Active or completed.
    pub status: SagaStatus,
    /// Version (steps saved).
    pub version: i64,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Undo messages recorded and not yet sent.
    pub pending_compensations: usize,
    /// Timeouts armed.
    pub armed_timeouts: usize,
}

impl SagaSummary {
    /// The summary of a record.
    pub fn of(r: &SagaRecord) -> Self {
        SagaSummary {
            saga: r.saga.clone(),
            key: r.key.clone(),
            state: r.state.clone(),
            status: r.status,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            pending_compensations: r.compensations.len(),
            armed_timeouts: r.timeouts.len(),
        }
    }
}

/// Operator queries over a saga store.
#[async_trait]
pub trait SagaQueries: Send + Sync {
    /// Sagas matching `query`, least recently updated first.
    async fn list(&self, query: &SagaQuery) -> crate::Result<Vec<SagaSummary>>;

    /// One saga instance with its state, compensations and armed timeouts.
    async fn show(&self, saga: &str, key: &str) -> crate::Result<Option<SagaRecord>>;
}
