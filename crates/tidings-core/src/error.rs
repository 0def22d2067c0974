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
    /// A command has no endpoint that receives it, and no route names a queue for it.
    #[error(
        "no endpoint receives command `{0}`: give one endpoint a handler for it \
         (`Endpoint::handle` / `handle_fn`), or route it to the queue of another process \
         (`BusBuilder::route`)"
    )]
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

/// With feature `sqlx`: whether a sqlx error is worth retrying, decided from its variant
/// and, for a database error, from its typed code — never from its text. The SQLite and
/// PostgreSQL transports and handlers (`?` on a `sqlx::Error`) share this one rule:
///
/// - transient: I/O, TLS and protocol failures, pool timeouts, a closed pool (shutting
///   down: the message comes back), a crashed worker, a failed `BEGIN`;
/// - SQLite: primary result codes `SQLITE_BUSY`, `SQLITE_LOCKED`, `SQLITE_IOERR`,
///   `SQLITE_FULL`, `SQLITE_PROTOCOL` (with every extended code of theirs) are transient;
/// - PostgreSQL SQLSTATE: classes `08` (connection exception) and `53` (insufficient
///   resources), `40001` serialization failure, `40P01` deadlock, `55P03` lock not
///   available, `57P01`..`57P03` and `57P05` (shutdown, cannot connect now, idle session
///   closed) are transient;
/// - everything else (constraint violations, no row, decoding, configuration) permanent.
///
/// ```
/// use tidings_core::{error::sqlx_kind, ErrorKind};
///
/// assert_eq!(sqlx_kind(&sqlx::Error::PoolTimedOut), ErrorKind::Transient);
/// assert_eq!(sqlx_kind(&sqlx::Error::RowNotFound), ErrorKind::Permanent);
/// ```
#[cfg(feature = "sqlx")]
pub fn sqlx_kind(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => ErrorKind::Transient,
        sqlx::Error::Database(d) => {
            let transient = if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                d.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(sqlite_code_is_transient)
            } else if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                sqlstate_is_transient(pg.code())
            } else {
                false
            };
            if transient {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            }
        }
        _ => ErrorKind::Permanent,
    }
}

/// Whether an SQLite (extended) result code is worth retrying: its primary code (the low
/// byte) is `SQLITE_BUSY` (5), `SQLITE_LOCKED` (6), `SQLITE_IOERR` (10), `SQLITE_FULL`
/// (13) or `SQLITE_PROTOCOL` (15).
///
/// ```
/// use tidings_core::error::sqlite_code_is_transient;
///
/// assert!(sqlite_code_is_transient(5)); // SQLITE_BUSY
/// assert!(sqlite_code_is_transient(517)); // SQLITE_BUSY_SNAPSHOT
/// assert!(!sqlite_code_is_transient(2067)); // SQLITE_CONSTRAINT_UNIQUE
/// ```
pub fn sqlite_code_is_transient(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 10 | 13 | 15)
}

/// Whether a PostgreSQL SQLSTATE is worth retrying: classes `08` (connection exception)
/// and `53` (insufficient resources), `40001` (serialization failure), `40P01`
/// (deadlock), `55P03` (lock not available), `57P01` / `57P02` / `57P03` / `57P05` (admin
/// or crash shutdown, cannot connect now, idle session timeout).
///
/// ```
/// use tidings_core::error::sqlstate_is_transient;
///
/// assert!(sqlstate_is_transient("40001"));
/// assert!(sqlstate_is_transient("08006"));
/// assert!(!sqlstate_is_transient("23505")); // unique violation
/// ```
pub fn sqlstate_is_transient(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "53"))
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "57P05"
        )
}

#[cfg(all(test, feature = "sqlx"))]
mod tests {
    use super::*;

    /// Real SQLite errors (a database error cannot be built by hand): a unique violation
    /// is permanent, `SQLITE_BUSY` (another connection holds the write lock) transient.
    #[tokio::test]
    async fn sqlite_errors_by_code() {
        use sqlx::sqlite::SqliteConnectOptions;
        use sqlx::{ConnectOptions, Connection};
        let path = std::env::temp_dir().join(format!("tidings-kind-{}.db", uuid::Uuid::new_v4()));
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut a = opts.connect().await.unwrap();
        let mut b = opts.connect().await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .execute(&mut a)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut a)
            .await
            .unwrap();
        let dup = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut a)
            .await
            .unwrap_err();
        assert_eq!(sqlx_kind(&dup), ErrorKind::Permanent, "{dup}");

        let mut tx = a.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES (3)")
            .execute(&mut b)
            .await
            .unwrap_err();
        assert_eq!(sqlx_kind(&busy), ErrorKind::Transient, "{busy}");
        tx.rollback().await.unwrap();
        drop((a, b));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sqlstates() {
        for code in [
            "08000", "08006", "53300", "40001", "40P01", "55P03", "57P01", "57P05",
        ] {
            assert!(sqlstate_is_transient(code), "{code}");
        }
        for code in ["23505", "23503", "42P01", "57P04", "22P02", "0"] {
            assert!(!sqlstate_is_transient(code), "{code}");
        }
    }
}
