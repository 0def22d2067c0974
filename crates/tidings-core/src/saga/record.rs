//! What a saga store keeps per instance ([`SagaRecord`]), the undo messages a step records
//! ([`Compensation`]) and what one step decided to write ([`Decision`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::transport::{Destination, Outgoing};
use crate::Envelope;

/// Whether a saga still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SagaStatus {
    /// Running: messages are handled.
    Active,
    /// Finished ([`Step::complete`](super::Step::complete)) and kept for its retention window.
    Completed,
}

impl SagaStatus {
    /// `"active"` or `"completed"` (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Active => "active",
            SagaStatus::Completed => "completed",
        }
    }

    /// Parses [`SagaStatus::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(SagaStatus::Active),
            "completed" => Some(SagaStatus::Completed),
            _ => None,
        }
    }
}

/// An undo message recorded by a step ([`Step::compensate_with`](super::Step::compensate_with)),
/// sent when a later step fails ([`Step::fail`](super::Step::fail)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compensation {
    /// Contract name.
    pub message_type: String,
    /// Contract version.
    pub version: u32,
    /// The queue a command goes to; `None` for a published event.
    pub queue: Option<String>,
    /// The message body (JSON).
    pub body: serde_json::Value,
    /// When the step recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl Compensation {
    /// The compensation recorded from an outgoing message built by a producer.
    pub(crate) fn from_outgoing(out: &Outgoing) -> crate::Result<Self> {
        Ok(Compensation {
            message_type: out.envelope.message_type.clone(),
            version: out.envelope.version,
            queue: match &out.destination {
                Destination::Queue(q) => Some(q.clone()),
                Destination::Topic => None,
            },
            body: serde_json::from_slice(&out.envelope.body)
                .map_err(|e| crate::Error::Serialization(e.to_string()))?,
            recorded_at: Utc::now(),
        })
    }

    /// A fresh envelope carrying this compensation (same body, new id).
    pub(crate) fn envelope(&self) -> crate::Result<Envelope> {
        let body = serde_json::to_vec(&self.body)
            .map_err(|e| crate::Error::Serialization(e.to_string()))?;
        Ok(Envelope::new(self.message_type.clone(), self.version, body))
    }
}

/// One saga instance as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaRecord {
    /// The saga's name (its definition).
    pub saga: String,
    /// The correlation key.
    pub key: String,
    /// The state's name ([`SagaState::name`](super::SagaState::name)), for queries.
    pub state: String,
    /// The typed state as JSON.
    pub data: serde_json::Value,
    /// Optimistic concurrency: bumped by every save.
    pub version: i64,
    /// Active or completed.
    pub status: SagaStatus,
    /// When the saga started.
    pub created_at: DateTime<Utc>,
    /// When a step last changed it.
    pub updated_at: DateTime<Utc>,
    /// When it completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// Undo messages recorded so far, oldest first (run newest first).
    pub compensations: Vec<Compensation>,
    /// Ids of the timeout messages still armed; any other timeout is stale.
    pub timeouts: Vec<Uuid>,
}

/// What a store keeps beside the state: the compensations and the armed timeouts (one JSON
/// column in the SQL stores).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SagaMeta {
    /// See [`SagaRecord::compensations`].
    #[serde(default)]
    pub compensations: Vec<Compensation>,
    /// See [`SagaRecord::timeouts`].
    #[serde(default)]
    pub timeouts: Vec<Uuid>,
}

impl SagaRecord {
    /// The compensations and timeouts, for a store's meta column.
    pub fn meta(&self) -> SagaMeta {
        SagaMeta {
            compensations: self.compensations.clone(),
            timeouts: self.timeouts.clone(),
        }
    }
}

/// The write a step asks the store for. The store checks the version (optimistic
/// concurrency) and fails the whole step with [`Error::Conflict`](crate::Error::Conflict)
/// if someone else saved in between.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Nothing to store (the message was ignored, or a saga completed in its first step).
    Nothing,
    /// A new saga (version 1); a conflict if one exists.
    Insert(SagaRecord),
    /// The new record; `record.version` is the version the step read (the store saves
    /// `version + 1`).
    Update(SagaRecord),
    /// Remove the saga (completed, not retained); `expected` is the version read.
    Delete {
        /// The saga's key.
        key: String,
        /// The version the step read.
        expected: i64,
    },
}

/// What one step decided: the write and the messages to send, committed together.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The state change.
    pub write: Write,
    /// Messages to send or publish when the step commits.
    pub outgoing: Vec<Outgoing>,
}

impl Decision {
    /// No write, no messages.
    pub fn nothing() -> Self {
        Decision {
            write: Write::Nothing,
            outgoing: Vec::new(),
        }
    }
}
