//! Retrying transient database errors (connection lost, deadlock, ...) a few times with
//! a short backoff. Only used for statements that are safe to repeat.

use std::future::Future;
use std::time::Duration;

use crate::error::{is_transient, PgError};

/// Attempts per statement.
const ATTEMPTS: u32 = 5;

/// Runs `f` until it succeeds, fails permanently, or `ATTEMPTS` are used.
pub(crate) async fn retry<T, F, Fut>(operation: &'static str, mut f: F) -> Result<T, PgError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut delay = Duration::from_millis(20);
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && is_transient(&e) => {
                tracing::debug!(operation, attempt, error = %e, "tidings-postgres: retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 3).min(Duration::from_secs(1));
                attempt += 1;
            }
            Err(source) => return Err(PgError::Database { operation, source }),
        }
    }
}
