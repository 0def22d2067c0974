//! The crate's error type and the [`ErrorKind`] that says what is retryable.

use std::time::Duration;

/// Result alias used across Tidings.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, and so whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A passing fault (connection lost, busy, timeout): trying again may succeed.
    Transient,
    /// Will fail the same way again (bad configuration, bad input).
    Permanent,
}

/// Errors of the Tidings core and of transports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The topology (endpoints, contracts, routes) is invalid; found at start-up.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A message is larger than the endpoint or transport accepts.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Size of the encoded body in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// A command has no endpoint that receives it.
    #[error("no endpoint receives command `{0}`: add `.receives::<{0}>()` to one endpoint")]
    NoRoute(String),
    /// Encoding or decoding a body failed.
    #[error("serialization failed: {0}")]
    Serialization(String),
    /// The queue or endpoint does not exist on the transport.
    #[error("unknown queue `{0}`")]
    UnknownQueue(String),
    /// A request did not get its response in time.
    #[error("request `{message_type}` got no response within {timeout:?}")]
    RequestTimeout {
        /// The request's message type.
        message_type: String,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The bus or transport has been shut down.
    #[error("the bus is shut down")]
    Shutdown,
    /// A transport-specific failure.
    #[error("transport error: {message}")]
    Transport {
        /// What went wrong, with credentials redacted.
        message: String,
        /// Whether trying again can help.
        kind: ErrorKind,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The operation is not supported by this transport.
    #[error("`{operation}` is not supported by the {transport} transport")]
    Unsupported {
        /// The operation asked for.
        operation: &'static str,
        /// The transport's name.
        transport: &'static str,
    },
    /// A saga instance was saved by someone else between a step's load and its save
    /// (optimistic concurrency): nothing was written; the step is re-run.
    #[error("saga `{saga}` key `{key}` changed concurrently (expected version {expected:?}, found {found:?})")]
    Conflict {
        /// The saga's name.
        saga: String,
        /// The instance's key.
        key: String,
        /// The version the step read (`None`: it expected no instance).
        expected: Option<i64>,
        /// The version found at save (`None`: the instance is gone).
        found: Option<i64>,
    },
    /// A dead letter with this id was not found.
    #[error("dead letter `{0}` not found")]
    NotFound(String),
}

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Transport { kind, .. } => *kind,
            Error::RequestTimeout { .. } | Error::Conflict { .. } => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// A transient transport error wrapping `source`.
    pub fn transient(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Transport {
            message: message.into(),
            kind: ErrorKind::Transient,
            source: Some(Box::new(source)),
        }
    }

    /// A permanent transport error wrapping `source`.
    pub fn permanent(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Transport {
            message: message.into(),
            kind: ErrorKind::Permanent,
            source: Some(Box::new(source)),
        }
    }
}
