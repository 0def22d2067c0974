//! [`AdminError`]: what can go wrong serving the admin API, and how it maps onto
//! [`tidings_core::Error`].

use std::net::SocketAddr;

use tidings_core::ErrorKind;

/// Errors of the admin API, server and monitor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Binding a non-loopback address without a bearer token was refused.
    #[error(
        "refusing to serve the admin API on {addr} without a token: it can replay and purge \
         dead letters. Bind 127.0.0.1 / ::1, or set a bearer token (AdminConfig::token, \
         `tidings dashboard --token` or TIDINGS_ADMIN_TOKEN)"
    )]
    InsecureBind {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The listening socket could not be opened.
    #[error("could not listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("admin server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A duration or `since` value could not be parsed.
    #[error("invalid duration `{0}`: use a number and a unit, e.g. 30s, 15m, 1h, 2d (or an RFC 3339 time for since)")]
    InvalidDuration(String),
    /// A message id was not a UUID.
    #[error("invalid message id `{0}`: expected a UUID")]
    InvalidId(String),
    /// A request to the admin API was malformed or would do more than it says.
    #[error("{0}")]
    InvalidRequest(String),
    /// The Prometheus recorder could not be installed.
    #[error("could not install the Prometheus recorder: {0}")]
    Metrics(String),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] tidings_core::Error),
}

impl From<AdminError> for tidings_core::Error {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Transport(t) => t,
            AdminError::Bind { .. } | AdminError::Serve(_) => tidings_core::Error::Transport {
                message: e.to_string(),
                kind: ErrorKind::Transient,
                source: Some(Box::new(e)),
            },
            other => tidings_core::Error::Config(other.to_string()),
        }
    }
}
