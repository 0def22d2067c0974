//! [`RabbitMqError`]: what goes wrong talking to RabbitMQ, converted into
//! [`tidings_core::Error`] with the right [`ErrorKind`](tidings_core::ErrorKind).
//! [`RabbitMqError::kind`] is decided from lapin's typed error kinds and AMQP reply codes
//! (and HTTP statuses for the management API) when the error is made, never from text.
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
        /// Whether trying again can help (refused credentials or vhost: no).
        retryable: bool,
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
        /// Whether trying again can help (unreachable, 5xx: yes; refused, 4xx: no).
        retryable: bool,
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

    /// A failed connection attempt; `redact` removes secrets from its text.
    pub(crate) fn connect(url: String, e: &lapin::Error, redact: impl Fn(&str) -> String) -> Self {
        RabbitMqError::Connect {
            url,
            reason: redact(&e.to_string()),
            retryable: is_retryable(e),
        }
    }

    /// Whether trying again can help: connection and AMQP failures as their lapin kind
    /// said; a nacked publish and a stale delivery are transient; configuration and names
    /// too long are permanent.
    pub fn kind(&self) -> ErrorKind {
        let retryable = match self {
            RabbitMqError::Config(_) | RabbitMqError::NameTooLong(_) => false,
            RabbitMqError::Connect { retryable, .. }
            | RabbitMqError::Amqp { retryable, .. }
            | RabbitMqError::Management { retryable, .. } => *retryable,
            RabbitMqError::Nacked(_) | RabbitMqError::StaleDelivery(_) => true,
        };
        if retryable {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        }
    }
}

/// Whether a lapin error is worth retrying (lost connection, closed channel, missed
/// heartbeat, a broker closing the connection) rather than a refusal that will repeat
/// (access refused, unknown vhost, precondition failed, not found, content too large, an
/// unsupported protocol version, a failing authentication provider).
fn is_retryable(e: &lapin::Error) -> bool {
    kind_is_retryable(e.kind())
}

fn kind_is_retryable(kind: &lapin::ErrorKind) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
    match kind {
        lapin::ErrorKind::ProtocolError(p) => !matches!(
            p.kind(),
            AMQPErrorKind::Soft(
                AMQPSoftError::ACCESSREFUSED
                    | AMQPSoftError::PRECONDITIONFAILED
                    | AMQPSoftError::NOTFOUND
                    | AMQPSoftError::CONTENTTOOLARGE
            ) | AMQPErrorKind::Hard(
                AMQPHardError::INVALIDPATH
                    | AMQPHardError::NOTALLOWED
                    | AMQPHardError::NOTIMPLEMENTED
            )
        ),
        lapin::ErrorKind::ParsingError(_)
        | lapin::ErrorKind::SerialisationError(_)
        | lapin::ErrorKind::InvalidProtocolVersion(_)
        | lapin::ErrorKind::AuthProviderError(_)
        | lapin::ErrorKind::NoDefaultRuntime => false,
        _ => true,
    }
}

/// Whether a management API failure is worth retrying: not reached or timed out, or a
/// 5xx / 408 / 429 answer; a refusal (other 4xx) or an unreadable answer is not.
pub(crate) fn http_retryable(e: &reqwest::Error) -> bool {
    match e.status() {
        Some(s) => status_retryable(s),
        None => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
    }
}

/// Whether an HTTP status says trying again may help (5xx, 408, 429).
pub(crate) fn status_retryable(s: reqwest::StatusCode) -> bool {
    s.is_server_error() || matches!(s.as_u16(), 408 | 429)
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

/// For handlers: keeps the error's [`kind`](RabbitMqError::kind), text shown once.
impl From<RabbitMqError> for tidings_core::HandlerError {
    fn from(e: RabbitMqError) -> Self {
        tidings_core::HandlerError::from(tidings_core::Error::from(e))
    }
}

#[cfg(test)]
mod tests {
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    use super::*;

    fn protocol(kind: AMQPErrorKind) -> lapin::ErrorKind {
        lapin::ErrorKind::ProtocolError(AMQPError::new(kind, "from the broker".into()))
    }

    #[test]
    fn lapin_kinds() {
        let io = std::sync::Arc::new(std::io::Error::other("reset"));
        for k in [
            lapin::ErrorKind::IOError(io),
            lapin::ErrorKind::MissingHeartbeatError,
            lapin::ErrorKind::ChannelsLimitReached,
            protocol(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)),
            protocol(AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)),
        ] {
            assert!(kind_is_retryable(&k), "{k:?}");
        }
        for k in [
            protocol(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)),
            protocol(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)),
            protocol(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)),
            protocol(AMQPErrorKind::Hard(AMQPHardError::INVALIDPATH)),
            protocol(AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)),
            lapin::ErrorKind::AuthProviderError("no token".into()),
        ] {
            assert!(!kind_is_retryable(&k), "{k:?}");
        }
    }

    #[test]
    fn kinds() {
        let refused: lapin::Error =
            protocol(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)).into();
        let e = RabbitMqError::connect("amqp://h".into(), &refused, str::to_owned);
        assert_eq!(
            e.kind(),
            ErrorKind::Permanent,
            "bad credentials do not get better"
        );
        let lost: lapin::Error = lapin::ErrorKind::MissingHeartbeatError.into();
        let e = RabbitMqError::connect("amqp://h".into(), &lost, str::to_owned);
        assert_eq!(e.kind(), ErrorKind::Transient);
        let e = RabbitMqError::amqp("queue.declare", &refused, str::to_owned);
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert_eq!(
            RabbitMqError::Nacked("m".into()).kind(),
            ErrorKind::Transient
        );
        assert_eq!(
            RabbitMqError::NameTooLong("q".into()).kind(),
            ErrorKind::Permanent
        );
        assert!(status_retryable(reqwest::StatusCode::SERVICE_UNAVAILABLE));
        assert!(status_retryable(reqwest::StatusCode::TOO_MANY_REQUESTS));
        assert!(!status_retryable(reqwest::StatusCode::UNAUTHORIZED));
        let h = tidings_core::HandlerError::from(RabbitMqError::Nacked("m1".into()));
        assert_eq!(h.kind(), ErrorKind::Transient);
        assert_eq!(
            h.to_string(),
            "transport error: RabbitMQ did not accept message m1 (publisher nack)"
        );
    }
}
