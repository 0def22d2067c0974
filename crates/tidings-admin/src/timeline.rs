//! `GET /messages?correlation_id=..`: one conversation's messages in order — what the
//! [`MessageJournal`] saw this process consume, merged with the matching dead letters of
//! the error queues (which also hold what other processes, or earlier runs, dead-lettered).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tidings_core::transport::DeadLetter;
use uuid::Uuid;

use crate::api_error::{ApiError, Problem};
use crate::query::DlqFilter;
use crate::view::DeadLetterView;
use crate::{AdminState, JournalEntry, MessageJournal};

/// Where a [`TimelineEntry`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TimelineSource {
    /// The in-process message journal.
    Journal,
    /// An error queue (a dead letter the journal did not see end).
    ErrorQueue,
}

/// One step of a conversation: a delivery's end, or a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// Where it comes from.
    pub source: TimelineSource,
    /// When the delivery ended (for a dead letter: when it was dead-lettered).
    pub at: DateTime<Utc>,
    /// The endpoint.
    pub endpoint: String,
    /// Message id.
    pub id: Uuid,
    /// Contract name.
    pub message_type: String,
    /// Contract version.
    pub version: u32,
    /// The message that caused this one.
    pub causation_id: Option<Uuid>,
    /// Delivery count (journal entries only).
    pub delivery_count: Option<u32>,
    /// `consumed`, `redelivered`, `deferred`, `dead-lettered` or `expired`.
    pub outcome: String,
    /// Fault reason.
    pub reason: Option<String>,
    /// Error text.
    pub error: Option<String>,
    /// Redelivery delay in milliseconds.
    pub delay_ms: Option<u64>,
    /// Whether it is in an error queue now (can be shown, replayed, purged).
    pub in_error_queue: bool,
}

/// The answer of `GET /messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timeline {
    /// The correlation id searched.
    pub correlation_id: String,
    /// Whether a message journal is installed; without one only dead letters are found.
    pub journal: bool,
    /// The journal's capacity (it keeps the last this-many deliveries of this process).
    pub journal_capacity: Option<usize>,
    /// Observations the journal already dropped to stay within its capacity.
    pub journal_dropped: Option<u64>,
    /// Why the error queues could not be searched, if they could not.
    pub dead_letters_error: Option<String>,
    /// The messages, oldest first.
    pub messages: Vec<TimelineEntry>,
}

impl From<JournalEntry> for TimelineEntry {
    fn from(e: JournalEntry) -> Self {
        TimelineEntry {
            source: TimelineSource::Journal,
            at: e.at,
            endpoint: e.endpoint,
            id: e.id,
            message_type: e.message_type,
            version: e.version,
            causation_id: e.causation_id,
            delivery_count: Some(e.delivery_count),
            outcome: e.outcome,
            reason: e.reason,
            error: e.error,
            delay_ms: e.delay_ms,
            in_error_queue: false,
        }
    }
}

impl From<&DeadLetter> for TimelineEntry {
    fn from(d: &DeadLetter) -> Self {
        let v = DeadLetterView::from(d);
        TimelineEntry {
            source: TimelineSource::ErrorQueue,
            at: v.dead_lettered_at,
            endpoint: v.endpoint,
            id: v.id,
            message_type: v.message_type,
            version: v.version,
            causation_id: d.envelope.causation_id,
            delivery_count: None,
            outcome: "dead-lettered".into(),
            reason: v.reason,
            error: v.error,
            delay_ms: None,
            in_error_queue: true,
        }
    }
}

/// Merges journal entries (in journal order) with dead letters: a dead letter whose end the
/// journal saw marks that entry `in_error_queue` instead of appearing twice; the others
/// are placed by time. The result is sorted by time, journal order breaking ties.
pub(crate) fn merge(journal: Vec<JournalEntry>, dead: &[DeadLetter]) -> Vec<TimelineEntry> {
    let mut out: Vec<TimelineEntry> = journal.into_iter().map(TimelineEntry::from).collect();
    for d in dead {
        let seen = out.iter_mut().rev().find(|e| {
            e.source == TimelineSource::Journal
                && e.outcome == "dead-lettered"
                && e.id == d.envelope.id
                && e.endpoint == d.queue
        });
        match seen {
            Some(e) => e.in_error_queue = true,
            None => out.push(TimelineEntry::from(d)),
        }
    }
    // Stable: journal entries with equal times keep their journal order.
    out.sort_by_key(|e| e.at);
    out
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub(crate) struct MessagesQuery {
    /// The conversation (required).
    correlation_id: Option<String>,
}

/// One conversation's messages in order: the journal's deliveries merged with dead letters.
#[utoipa::path(get, path = "/messages", tag = "messages", params(MessagesQuery),
    responses(
        (status = 200, description = "The conversation", body = Timeline),
        (status = "4XX", response = Problem),
        (status = "5XX", response = Problem),
    ))]
pub(crate) async fn messages(
    State(s): State<AdminState>,
    Query(q): Query<MessagesQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let Some(correlation_id) = q
        .correlation_id
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "add `correlation_id=..` to the query",
        ));
    };
    let journal = s.journal.as_ref();
    let seen = journal.map_or_else(Vec::new, |j| j.by_correlation(&correlation_id));
    let filter = DlqFilter {
        correlation_id: Some(correlation_id.clone()),
        ..Default::default()
    };
    let (dead, dead_letters_error) = match filter.list(s.transport.as_ref()).await {
        Ok(found) => (found, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Ok(Json(Timeline {
        correlation_id,
        journal: journal.is_some(),
        journal_capacity: journal.map(MessageJournal::capacity),
        journal_dropped: journal.map(MessageJournal::dropped),
        dead_letters_error,
        messages: merge(seen, &dead),
    }))
}
