//! [`RabbitMqError`]: what goes wrong talking to RabbitMQ, converted into
//! [`tidings_core::Error`] with the right [`ErrorKind`](tidings_core::ErrorKind).
//!
//! Messages never carry credentials: every text built from a lapin error passes through
//! the configuration's redaction first.

use tidings_core::ErrorKind;

/// Errors of the RabbitMQ transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RabbitMqError {
    /// The URL or a setting is invalid.
    #[error("invalid RabbitMQ configuration: {0}")]
    Config(String),
    /// Could not connect (or reconnect) in time.
    #[error("cannot connect to RabbitMQ at {url}: {reason}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// Why (redacted).
        reason: String,
    },
    /// An AMQP operation failed (connection or channel lost, broker refusal).
    #[error("RabbitMQ `{operation}` failed: {reason}")]
    Amqp {
        /// The operation (`basic.publish`, `queue.declare`, ...).
        operation: &'static str,
        /// What the broker or client said (redacted).
        reason: String,
        /// Whether trying again can help.
        retryable: bool,
    },
    /// The broker refused (nacked) a published message.
    #[error("RabbitMQ did not accept message {0} (publisher nack)")]
    Nacked(String),
    /// A delivery can no longer be settled: its channel is gone, and the broker will
    /// deliver the message again.
    #[error("delivery {0} can no longer be settled (channel closed); it will be redelivered")]
    StaleDelivery(String),
    /// The management HTTP API did not answer as expected (used to list queues).
    #[error("RabbitMQ management API at {url} failed: {reason}")]
    Management {
        /// Its base URL (no credentials).
        url: String,
        /// Why (redacted).
        reason: String,
    },
    /// A name does not fit AMQP's 255-byte limit.
    #[error("name too long for AMQP (255 bytes max): `{0}`")]
    NameTooLong(String),
}

impl RabbitMqError {
    /// Wraps a lapin error; `redact` removes secrets from its text.
    pub(crate) fn amqp(
        operation: &'static str,
        e: &lapin::Error,
        redact: impl Fn(&str) -> String,
    ) -> Self {
        RabbitMqError::Amqp {
            operation,
            reason: redact(&e.to_string()),
            retryable: is_retryable(e),
        }
    }

    /// Whether trying again can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RabbitMqError::Config(_) | RabbitMqError::NameTooLong(_) => ErrorKind::Permanent,
            RabbitMqError::Amqp {
                retryable: false, ..
            } => ErrorKind::Permanent,
            _ => ErrorKind::Transient,
        }
    }
}

/// Whether a lapin error is worth retrying (lost connection, closed channel, timeouts)
/// rather than a refusal that will repeat (access refused, precondition failed).
fn is_retryable(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => !matches!(
            p.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::NOTFOUND
                    | AMQPSoftError::CONTENTTOOLARGE
            )
        ),
        lapin::ErrorKind::ParsingError(_) | lapin::ErrorKind::SerialisationError(_) => false,
        _ => true,
    }
}

/// Whether a lapin error is the broker's 404 NOT_FOUND (queue or exchange missing).
pub(crate) fn is_not_found(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p)
        if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

impl From<RabbitMqError> for tidings_core::Error {
    fn from(e: RabbitMqError) -> Self {
        match e {
            RabbitMqError::Config(m) => tidings_core::Error::Config(m),
            other => tidings_core::Error::Transport {
                message: other.to_string(),
                kind: other.kind(),
                source: Some(Box::new(other)),
            },
        }
    }
}
