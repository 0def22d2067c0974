//! [`SagaStore`]: saga state keyed by (saga name, correlation key), JSON-encoded, with a
//! version for optimistic concurrency. A save names the version it read; if someone saved
//! in between, it fails with [`SqliteError::Conflict`] and overwrites nothing.
//!
//! Save the state in the same transaction as the saga's outgoing messages (an
//! [`Outbox`](crate::Outbox) on the connection of a
//! [`SqliteTransport::write`](crate::SqliteTransport::write) job), so state and messages
//! commit together. A saga *timeout* is a
//! scheduled message sent in that transaction:
//! `outbox.dispatch(conn, &PaymentTimedOut { .. }, SendOptions::default().delay(d))`;
//! when it arrives, the handler loads the saga and ignores it if the saga moved on.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Executor, Sqlite};

use crate::error::{Result, SqliteError};
use crate::schema::now_ms;
use crate::transport::SqliteTransport;

/// State of one kind of saga.
pub struct SagaStore<S> {
    transport: SqliteTransport,
    name: String,
    _state: PhantomData<fn() -> S>,
}

impl<S> Clone for SagaStore<S> {
    fn clone(&self) -> Self {
        SagaStore {
            transport: self.transport.clone(),
            name: self.name.clone(),
            _state: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for SagaStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaStore")
            .field("name", &self.name)
            .finish()
    }
}

async fn version_of<'e>(
    ex: impl Executor<'e, Database = Sqlite>,
    saga: &str,
    key: &str,
) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT version FROM tidings_sagas WHERE saga = ? AND key = ?")
            .bind(saga)
            .bind(key)
            .fetch_optional(ex)
            .await?,
    )
}

impl<S: Serialize + DeserializeOwned + Send> SagaStore<S> {
    /// The store of saga `name` on `transport`'s database.
    pub fn new(transport: &SqliteTransport, name: impl Into<String>) -> Self {
        SagaStore {
            transport: transport.clone(),
            name: name.into(),
            _state: PhantomData,
        }
    }

    /// The saga's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state and its version, if the saga exists.
    pub async fn load(&self, key: &str) -> Result<Option<(S, i64)>> {
        let mut conn = self.transport.pool().acquire().await?;
        self.load_in(&mut conn, key).await
    }

    /// [`SagaStore::load`] inside a transaction.
    pub async fn load_in(
        &self,
        conn: &mut SqliteConnection,
        key: &str,
    ) -> Result<Option<(S, i64)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT state, version FROM tidings_sagas WHERE saga = ? AND key = ?")
                .bind(&self.name)
                .bind(key)
                .fetch_optional(conn)
                .await?;
        row.map(|(s, v)| Ok((serde_json::from_str(&s)?, v)))
            .transpose()
    }

    fn conflict(&self, key: &str, expected: Option<i64>, found: Option<i64>) -> SqliteError {
        SqliteError::Conflict {
            saga: self.name.clone(),
            key: key.to_string(),
            expected,
            found,
        }
    }

    /// Saves `state` in `conn`'s transaction if the stored version is `expected` (`None`: the saga must not
    /// exist yet). Returns the new version; fails with [`SqliteError::Conflict`] otherwise.
    pub async fn save(
        &self,
        conn: &mut SqliteConnection,
        key: &str,
        state: &S,
        expected: Option<i64>,
    ) -> Result<i64> {
        let json = serde_json::to_string(state)?;
        let new_version = expected.unwrap_or(0) + 1;
        let n = match expected {
            None => sqlx::query(
                "INSERT INTO tidings_sagas (saga, key, state, version, updated_at) \
                 VALUES (?, ?, ?, 1, ?) ON CONFLICT (saga, key) DO NOTHING",
            )
            .bind(&self.name)
            .bind(key)
            .bind(&json)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?
            .rows_affected(),
            Some(v) => sqlx::query(
                "UPDATE tidings_sagas SET state = ?, version = ?, updated_at = ? \
                 WHERE saga = ? AND key = ? AND version = ?",
            )
            .bind(&json)
            .bind(new_version)
            .bind(now_ms())
            .bind(&self.name)
            .bind(key)
            .bind(v)
            .execute(&mut *conn)
            .await?
            .rows_affected(),
        };
        if n == 0 {
            let found = version_of(&mut *conn, &self.name, key).await?;
            return Err(self.conflict(key, expected, found));
        }
        Ok(new_version)
    }

    /// Deletes the saga (it completed) in `conn`'s transaction if its version is `expected`.
    pub async fn delete(
        &self,
        conn: &mut SqliteConnection,
        key: &str,
        expected: i64,
    ) -> Result<()> {
        let n = sqlx::query("DELETE FROM tidings_sagas WHERE saga = ? AND key = ? AND version = ?")
            .bind(&self.name)
            .bind(key)
            .bind(expected)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if n == 0 {
            let found = version_of(&mut *conn, &self.name, key).await?;
            return Err(self.conflict(key, Some(expected), found));
        }
        Ok(())
    }

    /// Loads, applies `f`, and saves in one [`SqliteTransport::write`] job (the load and
    /// the save see no writer in between, and share the writer's group commit).
    /// `f` gets the current state (`None`: no saga yet) and returns the new one (`None`:
    /// the saga is complete — it is deleted). Returns what was stored with its version.
    /// `f` runs on the writer: keep it to computing the new state.
    pub async fn update<F>(&self, key: &str, mut f: F) -> Result<Option<(S, i64)>>
    where
        S: Sync + 'static,
        F: FnMut(Option<S>) -> Option<S> + Send + 'static,
    {
        let store = self.clone();
        let key = key.to_string();
        self.transport
            .write(move |conn: &mut SqliteConnection| {
                Box::pin(async move {
                    let current = store.load_in(conn, &key).await?;
                    let version = current.as_ref().map(|(_, v)| *v);
                    let next = f(current.map(|(s, _)| s));
                    let v = match (&next, version) {
                        (Some(s), _) => Some(store.save(conn, &key, s, version).await?),
                        (None, Some(v)) => {
                            store.delete(conn, &key, v).await?;
                            None
                        }
                        (None, None) => None,
                    };
                    Ok(next.zip(v))
                })
            })
            .await
    }
}
