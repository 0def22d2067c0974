//! [`SqliteError`]: everything that can go wrong in this crate, and how it maps onto
//! [`tidings_core::Error`] and [`tidings_core::HandlerError`]. [`SqliteError::kind`]
//! decides from sqlx's error variants and SQLite result codes (busy / locked / I/O are
//! transient, the rest permanent).

use std::path::PathBuf;
use std::sync::Arc;

use tidings_core::ErrorKind;

/// Result alias of this crate.
pub type Result<T, E = SqliteError> = std::result::Result<T, E>;

/// Errors of the SQLite transport and stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The configuration (URL, option value) is invalid.
    #[error("invalid sqlite configuration: {0}")]
    Config(String),
    /// The database file could not be opened; `reason` says why in plain words.
    #[error("cannot open sqlite database {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why (missing directory, read-only, not a database, ...).
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The database was written by a newer version of tidings-sqlite.
    #[error(
        "sqlite database {path} has tidings schema version {found}, but this build supports \
         at most version {supported}: upgrade tidings-sqlite (refusing to touch it)"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A saga was changed by someone else since it was loaded (optimistic concurrency).
    #[error("saga `{saga}` key `{key}` conflict: expected version {expected:?}, found {found:?}")]
    Conflict {
        /// Saga name.
        saga: String,
        /// Correlation key.
        key: String,
        /// Version the caller loaded (`None`: expected no saga yet).
        expected: Option<i64>,
        /// Version found (`None`: no saga).
        found: Option<i64>,
    },
    /// A database statement failed.
    #[error("sqlite: {0}")]
    Database(#[from] sqlx::Error),
    /// A statement the writer ran directly on its connection's handle failed.
    #[error("sqlite: {0}")]
    Statement(#[from] rusqlite::Error),
    /// The operating system refused something (e.g. starting the writer's thread).
    #[error("sqlite transport: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding or decoding JSON failed.
    #[error("serialization failed: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The queue is not declared.
    #[error("unknown queue `{0}`")]
    UnknownQueue(String),
    /// The transport has been closed.
    #[error("the sqlite transport is closed")]
    Closed,
    /// A closure given to [`SqliteTransport::write`](crate::SqliteTransport::write)
    /// panicked; its writes were rolled back, the rest of the batch committed.
    #[error("a write closure panicked: {0}")]
    Panicked(String),
    /// The group-commit transaction a write closure ran in failed as a whole (its writes
    /// were rolled back with the batch); the inner error says why.
    #[error("group commit failed: {0}")]
    GroupCommit(Arc<SqliteError>),
}

impl SqliteError {
    /// Transient (busy, locked, I/O, disk full, pool timeout: see
    /// [`sqlx_kind`](tidings_core::error::sqlx_kind), except that a closed pool means this
    /// transport is closed, so permanent), a saga conflict (transient: the step is re-run),
    /// or permanent.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SqliteError::Database(e) => db_kind(e),
            SqliteError::Statement(e) => match e.sqlite_error_code() {
                // Busy, locked, I/O, full, protocol: as for `Database`.
                Some(
                    rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::FileLockingProtocolFailed,
                ) => ErrorKind::Transient,
                _ => ErrorKind::Permanent,
            },
            SqliteError::Conflict { .. } => ErrorKind::Transient,
            SqliteError::GroupCommit(e) => e.kind(),
            _ => ErrorKind::Permanent,
        }
    }

    /// Whether this is an optimistic-concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, SqliteError::Conflict { .. })
    }
}

/// The SQLite primary result code of `e`, if it is a database error.
pub(crate) fn sqlite_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

/// The kind of a driver error here: the workspace's one rule for sqlx errors, but a closed
/// pool is permanent (the transport is closed).
fn db_kind(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::PoolClosed => ErrorKind::Permanent,
        e => tidings_core::error::sqlx_kind(e),
    }
}

/// For handler closures given to [`SqliteTransport::write`](crate::SqliteTransport::write):
/// transient (busy, I/O, a failed group commit) stays retryable, the rest is permanent;
/// the text is shown once.
impl From<SqliteError> for tidings_core::HandlerError {
    fn from(e: SqliteError) -> Self {
        tidings_core::HandlerError::from(tidings_core::Error::from(e))
    }
}

impl From<SqliteError> for tidings_core::Error {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Closed => tidings_core::Error::Shutdown,
            SqliteError::Config(m) => tidings_core::Error::Config(m),
            SqliteError::UnknownQueue(q) => tidings_core::Error::UnknownQueue(q),
            SqliteError::Serialization(s) => tidings_core::Error::Serialization(s.to_string()),
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
        let t = |e: SqliteError| e.kind() == ErrorKind::Transient;
        assert!(t(SqliteError::Database(sqlx::Error::PoolTimedOut)));
        assert!(t(SqliteError::Database(sqlx::Error::Io(
            std::io::Error::other("eio")
        ))));
        assert!(
            !t(SqliteError::Database(sqlx::Error::PoolClosed)),
            "transport closed"
        );
        assert!(!t(SqliteError::Database(sqlx::Error::RowNotFound)));
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        assert!(t(SqliteError::Statement(busy)));
        let unique = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(2067), None);
        assert!(!t(SqliteError::Statement(unique)));
        let group = |e| SqliteError::GroupCommit(Arc::new(e));
        assert!(t(group(SqliteError::Database(sqlx::Error::PoolTimedOut))));
        assert!(!t(group(SqliteError::Closed)));
        assert!(t(SqliteError::Conflict {
            saga: "s".into(),
            key: "k".into(),
            expected: None,
            found: Some(1),
        }));
        assert!(!t(SqliteError::Closed));
        assert!(!t(SqliteError::Config("x".into())));
    }

    #[test]
    fn handler_errors_keep_the_kind_and_show_the_text_once() {
        let h = tidings_core::HandlerError::from(SqliteError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(h.kind(), ErrorKind::Transient);
        assert_eq!(
            h.to_string(),
            "transport error: sqlite: pool timed out while waiting for an open connection"
        );
        let h = tidings_core::HandlerError::from(SqliteError::Closed);
        assert!(h.is_permanent());
        assert_eq!(h.to_string(), "the bus is shut down");
    }
}
