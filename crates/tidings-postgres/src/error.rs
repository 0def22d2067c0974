//! [`PgError`]: what can go wrong in this crate, and how it maps onto
//! [`tidings_core::Error`] (connection trouble, serialization failures and deadlocks are
//! transient; the rest permanent).

use tidings_core::ErrorKind;

/// Errors of the PostgreSQL transport and stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// Bad configuration (URL, schema name). Never contains the password.
    #[error("invalid postgres configuration: {0}")]
    Config(String),
    /// A database or connection error.
    #[error("postgres {operation} failed: {source}")]
    Database {
        /// What the transport was doing.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An optimistic-concurrency conflict: the row changed since it was read.
    #[error("conflict on {what}: expected version {expected:?}, the stored row differs")]
    Conflict {
        /// The saga type and id.
        what: String,
        /// The version the caller read (`None`: expected no row).
        expected: Option<i64>,
    },
    /// The schema cannot be used by this build (written by a newer version).
    #[error("incompatible postgres schema: {0}")]
    Schema(String),
    /// A stored envelope or state could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The transport was closed.
    #[error("the postgres transport is closed")]
    Closed,
}

impl PgError {
    /// Wraps a driver error with what was being done.
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(sqlx::Error) -> PgError {
        move |source| PgError::Database { operation, source }
    }

    /// Transient (retrying may help) or permanent.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PgError::Database { source, .. } if is_transient(source) => ErrorKind::Transient,
            PgError::Conflict { .. } => ErrorKind::Transient,
            _ => ErrorKind::Permanent,
        }
    }

    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }
}

/// Connection loss, pool exhaustion, serialization failures, deadlocks, shutdowns and
/// resource shortages are transient.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") // connection exception
                || c.starts_with("53") // insufficient resources
                || c.starts_with("57P") // admin/crash shutdown, cannot connect now
                || c == "40001" // serialization failure
                || c == "40P01" // deadlock
                || c == "55P03" // lock not available
        }),
        _ => false,
    }
}

impl From<PgError> for tidings_core::Error {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Closed => tidings_core::Error::Shutdown,
            PgError::Database {
                source: sqlx::Error::PoolClosed,
                ..
            } => tidings_core::Error::Shutdown,
            other => {
                let kind = other.kind();
                tidings_core::Error::Transport {
                    message: other.to_string(),
                    kind,
                    source: Some(Box::new(other)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let io = PgError::Database {
            operation: "claim",
            source: sqlx::Error::Io(std::io::Error::other("reset")),
        };
        assert!(io.is_transient());
        let core: tidings_core::Error = io.into();
        assert!(core.is_retryable());
        let row = PgError::Database {
            operation: "load",
            source: sqlx::Error::RowNotFound,
        };
        assert!(!row.is_transient());
        let closed: tidings_core::Error = PgError::Closed.into();
        assert!(matches!(closed, tidings_core::Error::Shutdown));
    }
}
