//! [`NatsError`]: what can go wrong talking to NATS, and how it maps onto
//! [`tidings_core::Error`] (connection trouble and timeouts are transient).

use tidings_core::ErrorKind;

/// Errors of the NATS transport. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The configuration (URL, options) is invalid.
    #[error("invalid NATS configuration: {0}")]
    Config(String),
    /// Connecting to the server failed.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The server URL, credentials redacted.
        url: String,
        /// What went wrong, credentials redacted.
        message: String,
    },
    /// The server does not offer JetStream, or it is too old.
    #[error("JetStream not available: {0}")]
    JetStreamUnavailable(String),
    /// A JetStream API request (stream/consumer management, info, get) failed.
    #[error("JetStream request `{operation}` failed: {message}")]
    Request {
        /// What was asked.
        operation: String,
        /// The server's or client's answer.
        message: String,
        /// Whether trying again may help.
        transient: bool,
    },
    /// Publishing did not get its stream acknowledgement.
    #[error("publish to `{subject}` failed: {message}")]
    Publish {
        /// The subject.
        subject: String,
        /// What went wrong.
        message: String,
        /// Whether trying again may help.
        transient: bool,
    },
    /// Acknowledging (ack/nak/term/progress) a delivery failed.
    #[error("settling a delivery failed: {0}")]
    Settle(String),
    /// The queue has not been declared.
    #[error("unknown queue `{0}`")]
    UnknownQueue(String),
    /// The transport has been closed.
    #[error("the NATS transport is closed")]
    Closed,
    /// A stored message is not a Tidings envelope.
    #[error("cannot decode message: {0}")]
    Decode(String),
}

impl NatsError {
    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            NatsError::Connect { .. } | NatsError::Settle(_) => true,
            NatsError::Request { transient, .. } | NatsError::Publish { transient, .. } => {
                *transient
            }
            NatsError::Config(_)
            | NatsError::JetStreamUnavailable(_)
            | NatsError::Decode(_)
            | NatsError::UnknownQueue(_)
            | NatsError::Closed => false,
        }
    }

    /// A failed JetStream request; transient unless the server answered with an error.
    pub(crate) fn request(operation: impl Into<String>, err: impl std::fmt::Display) -> Self {
        let message = err.to_string();
        let transient = is_transient_text(&message);
        NatsError::Request {
            operation: operation.into(),
            message,
            transient,
        }
    }
}

/// Timeouts and connection losses are worth retrying; server-side JetStream errors are not.
pub(crate) fn is_transient_text(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "timed out",
        "timeout",
        "broken pipe",
        "disconnect",
        "connection",
        "no responders",
        "max ack pending",
        "reset",
        "closed",
    ]
    .iter()
    .any(|p| m.contains(p))
}

impl From<NatsError> for tidings_core::Error {
    fn from(e: NatsError) -> Self {
        let kind = if e.is_transient() {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        };
        match e {
            NatsError::Config(m) => tidings_core::Error::Config(m),
            NatsError::Decode(m) => tidings_core::Error::Serialization(m),
            NatsError::UnknownQueue(q) => tidings_core::Error::UnknownQueue(q),
            NatsError::Closed => tidings_core::Error::Shutdown,
            other => tidings_core::Error::Transport {
                message: other.to_string(),
                kind,
                source: Some(Box::new(other)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_core() {
        let t: tidings_core::Error = NatsError::Publish {
            subject: "s".into(),
            message: "timed out".into(),
            transient: true,
        }
        .into();
        assert!(t.is_retryable());
        let p: tidings_core::Error =
            NatsError::request("stream.create", "stream name in use").into();
        assert!(!p.is_retryable());
        let c: tidings_core::Error = NatsError::Config("bad".into()).into();
        assert!(matches!(c, tidings_core::Error::Config(_)));
    }
}
