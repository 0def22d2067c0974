//! [`PgError`]: what can go wrong in this crate, and how it maps onto
//! [`tidings_core::Error`] and [`tidings_core::HandlerError`]. [`PgError::kind`] decides
//! from sqlx's error variants and SQLSTATE codes (connection trouble, serialization
//! failures and deadlocks are transient; the rest permanent).

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

    /// Transient (retrying may help) or permanent: a driver error as
    /// [`sqlx_kind`](tidings_core::error::sqlx_kind) says (connection loss, pool timeout,
    /// serialization failure, deadlock, lock timeout, shutdown, insufficient resources),
    /// except a closed pool (this transport is closed); a conflict is transient (the step
    /// is re-run); the rest permanent.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PgError::Database { source, .. } => db_kind(source),
            PgError::Conflict { .. } => ErrorKind::Transient,
            PgError::Config(_) | PgError::Schema(_) | PgError::Corrupt(_) | PgError::Closed => {
                ErrorKind::Permanent
            }
        }
    }
}

/// The kind of a driver error here: [`sqlx_kind`](tidings_core::error::sqlx_kind), but a
/// closed pool is permanent (the transport was closed; it maps to
/// [`Error::Shutdown`](tidings_core::Error::Shutdown)).
fn db_kind(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::PoolClosed => ErrorKind::Permanent,
        e => tidings_core::error::sqlx_kind(e),
    }
}

/// Whether a driver error is worth retrying (see [`PgError::kind`]).
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    db_kind(e) == ErrorKind::Transient
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

/// For handlers: keeps the error's [`kind`](PgError::kind), text shown once.
impl From<PgError> for tidings_core::HandlerError {
    fn from(e: PgError) -> Self {
        tidings_core::HandlerError::from(tidings_core::Error::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(source: sqlx::Error) -> PgError {
        PgError::Database {
            operation: "claim",
            source,
        }
    }

    #[test]
    fn kinds() {
        let io = db(sqlx::Error::Io(std::io::Error::other("reset")));
        assert_eq!(io.kind(), ErrorKind::Transient);
        let core: tidings_core::Error = io.into();
        assert!(core.is_retryable());
        assert_eq!(db(sqlx::Error::PoolTimedOut).kind(), ErrorKind::Transient);
        assert_eq!(db(sqlx::Error::RowNotFound).kind(), ErrorKind::Permanent);
        assert_eq!(db(sqlx::Error::PoolClosed).kind(), ErrorKind::Permanent);
        let closed: tidings_core::Error = db(sqlx::Error::PoolClosed).into();
        assert!(matches!(closed, tidings_core::Error::Shutdown));
        let closed: tidings_core::Error = PgError::Closed.into();
        assert!(matches!(closed, tidings_core::Error::Shutdown));
        let conflict = PgError::Conflict {
            what: "saga".into(),
            expected: Some(1),
        };
        assert_eq!(conflict.kind(), ErrorKind::Transient);
        assert_eq!(PgError::Corrupt("x".into()).kind(), ErrorKind::Permanent);
        let h = tidings_core::HandlerError::from(db(sqlx::Error::PoolTimedOut));
        assert_eq!(h.kind(), ErrorKind::Transient);
        assert_eq!(
            h.to_string(),
            "transport error: postgres claim failed: pool timed out while waiting for an open connection"
        );
    }
}
