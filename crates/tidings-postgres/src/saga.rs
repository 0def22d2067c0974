//! [`SagaStore`]: saga state as JSON rows with a version column. Saving with a stale
//! version fails with [`PgError::Conflict`] instead of overwriting;
//! [`SagaStore::update`] reloads and retries.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::Row;

use crate::error::PgError;
use crate::transport::PostgresTransport;

/// Attempts [`SagaStore::update`] makes before giving up with the conflict.
pub const UPDATE_ATTEMPTS: u32 = 25;

/// A state and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<S> {
    /// The state.
    pub state: S,
    /// Its version (1 after insert, +1 per save).
    pub version: i64,
}

/// Saga instances of one transport's schema.
#[derive(Debug, Clone)]
pub struct SagaStore {
    transport: PostgresTransport,
}

fn what(saga_type: &str, id: &str) -> String {
    format!("saga {saga_type}/{id}")
}

fn json<S: Serialize>(state: &S) -> Result<serde_json::Value, PgError> {
    serde_json::to_value(state).map_err(|e| PgError::Corrupt(format!("saga state: {e}")))
}

impl SagaStore {
    /// The store in `transport`'s schema.
    pub fn new(transport: &PostgresTransport) -> Self {
        SagaStore {
            transport: transport.clone(),
        }
    }

    /// Loads an instance.
    pub async fn load<S: DeserializeOwned>(
        &self,
        saga_type: &str,
        id: &str,
    ) -> Result<Option<Versioned<S>>, PgError> {
        let row = sqlx::query(self.transport.shared.sql.saga_load.sql())
            .bind(saga_type)
            .bind(id)
            .fetch_optional(self.transport.pool())
            .await
            .map_err(PgError::db("saga load"))?;
        row.map(|r| {
            let state: serde_json::Value = r.get(1);
            Ok(Versioned {
                state: serde_json::from_value(state)
                    .map_err(|e| PgError::Corrupt(format!("{}: {e}", what(saga_type, id))))?,
                version: r.get(0),
            })
        })
        .transpose()
    }

    /// Inserts a new instance (version 1); [`PgError::Conflict`] if it exists.
    pub async fn insert<S: Serialize>(
        &self,
        saga_type: &str,
        id: &str,
        state: &S,
    ) -> Result<i64, PgError> {
        let done = sqlx::query(self.transport.shared.sql.saga_insert.sql())
            .bind(saga_type)
            .bind(id)
            .bind(json(state)?)
            .execute(self.transport.pool())
            .await
            .map_err(PgError::db("saga insert"))?;
        if done.rows_affected() == 1 {
            Ok(1)
        } else {
            Err(PgError::Conflict {
                what: what(saga_type, id),
                expected: None,
            })
        }
    }

    /// Saves `state` over version `expected`; returns the new version, or
    /// [`PgError::Conflict`] if the stored version differs (or the row is gone).
    pub async fn save<S: Serialize>(
        &self,
        saga_type: &str,
        id: &str,
        state: &S,
        expected: i64,
    ) -> Result<i64, PgError> {
        let done = sqlx::query(self.transport.shared.sql.saga_update.sql())
            .bind(saga_type)
            .bind(id)
            .bind(expected)
            .bind(json(state)?)
            .execute(self.transport.pool())
            .await
            .map_err(PgError::db("saga save"))?;
        if done.rows_affected() == 1 {
            Ok(expected + 1)
        } else {
            Err(PgError::Conflict {
                what: what(saga_type, id),
                expected: Some(expected),
            })
        }
    }

    /// Deletes a finished instance at version `expected` ([`PgError::Conflict`] otherwise).
    pub async fn delete(&self, saga_type: &str, id: &str, expected: i64) -> Result<(), PgError> {
        let done = sqlx::query(self.transport.shared.sql.saga_delete.sql())
            .bind(saga_type)
            .bind(id)
            .bind(expected)
            .execute(self.transport.pool())
            .await
            .map_err(PgError::db("saga delete"))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(PgError::Conflict {
                what: what(saga_type, id),
                expected: Some(expected),
            })
        }
    }

    /// Loads (or starts from `None`), applies `f`, and saves; on a conflict reloads and
    /// tries again after a short jittered backoff, up to [`UPDATE_ATTEMPTS`] times. `f` may
    /// run more than once.
    pub async fn update<S, F>(
        &self,
        saga_type: &str,
        id: &str,
        mut f: F,
    ) -> Result<Versioned<S>, PgError>
    where
        S: Serialize + DeserializeOwned,
        F: FnMut(Option<S>) -> S,
    {
        let mut attempt = 1;
        loop {
            let current = self.load::<S>(saga_type, id).await?;
            let res = match current {
                None => {
                    let state = f(None);
                    self.insert(saga_type, id, &state)
                        .await
                        .map(|version| Versioned { state, version })
                }
                Some(Versioned { state, version }) => {
                    let state = f(Some(state));
                    self.save(saga_type, id, &state, version)
                        .await
                        .map(|version| Versioned { state, version })
                }
            };
            match res {
                Err(PgError::Conflict { .. }) if attempt < UPDATE_ATTEMPTS => {
                    // Back off with jitter so contending writers spread out.
                    let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
                    let ms = u64::from(attempt.min(6)) * 2;
                    tokio::time::sleep(Duration::from_micros(ms * 1000 + jitter * ms)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}
