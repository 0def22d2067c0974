//! Wake-ups: a [`Notify`] per queue, poked by local sends and settlements and by the
//! `LISTEN` task, which relays `NOTIFY tidings_<schema>, '<queue>'` from every process.
//! Receivers also poll (the fallback: notifications sent while the listener reconnects
//! are lost, and all receivers are woken after a reconnect).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;

/// One [`Notify`] per queue name.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wake {
    /// The notifier of `queue` (created on first use).
    pub(crate) fn get(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(queue.to_string()).or_default().clone()
    }

    /// Wakes the receivers of `queue`.
    pub(crate) fn notify(&self, queue: &str) {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(queue) {
            n.notify_waiters();
        }
    }

    /// Wakes every receiver.
    pub(crate) fn notify_all(&self) {
        let map = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }
}

/// Relays notifications on `channel` to `wake` until the pool closes.
pub(crate) async fn listen(pool: PgPool, channel: String, wake: Arc<Wake>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if pool.is_closed() {
            return;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "tidings-postgres: LISTEN connect failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(error = %e, "tidings-postgres: LISTEN failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        backoff = Duration::from_millis(50);
        // Anything sent while we were not listening would otherwise wait for the poll.
        wake.notify_all();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => wake.notify(n.payload()),
                Ok(None) => {
                    tracing::debug!("tidings-postgres: LISTEN connection lost; reconnected");
                    wake.notify_all();
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "tidings-postgres: LISTEN failed; reconnecting");
                    wake.notify_all();
                    tokio::time::sleep(backoff).await;
                    break;
                }
            }
        }
    }
}
