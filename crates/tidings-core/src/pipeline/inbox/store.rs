//! [`InboxStore`]: where handled message ids are remembered; [`MemoryInbox`] keeps them in
//! memory for a window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use uuid::Uuid;

use crate::Result;

/// Remembers which messages an endpoint has handled.
#[async_trait]
pub trait InboxStore: Send + Sync + 'static {
    /// Whether `(message_id, endpoint)` was handled already.
    async fn seen(&self, message_id: Uuid, endpoint: &str) -> Result<bool>;
    /// Records that `(message_id, endpoint)` was handled.
    async fn record(&self, message_id: Uuid, endpoint: &str) -> Result<()>;
    /// The database this store keeps its rows in, when a transport can write them in the
    /// same commit as an ack (see
    /// [`Settle::inbox_home`](crate::transport::Settle::inbox_home)): the receive loop then
    /// records with the ack instead of calling [`InboxStore::record`]. Default: `None`.
    fn home(&self) -> Option<u64> {
        None
    }
}

/// An in-memory inbox; entries expire after the window.
#[derive(Debug)]
pub struct MemoryInbox {
    window: Duration,
    seen: Mutex<HashMap<(Uuid, String), Instant>>,
}

impl MemoryInbox {
    /// An inbox that remembers ids for `window`.
    pub fn new(window: Duration) -> Self {
        MemoryInbox {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Drops expired entries; returns how many.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let before = seen.len();
        seen.retain(|_, at| now.duration_since(*at) < self.window);
        before - seen.len()
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryInbox {
    fn default() -> Self {
        Self::new(Duration::from_secs(24 * 3600))
    }
}

#[async_trait]
impl InboxStore for MemoryInbox {
    async fn seen(&self, message_id: Uuid, endpoint: &str) -> Result<bool> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        Ok(seen
            .get(&(message_id, endpoint.to_string()))
            .is_some_and(|at| at.elapsed() < self.window))
    }

    async fn record(&self, message_id: Uuid, endpoint: &str) -> Result<()> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert((message_id, endpoint.to_string()), Instant::now());
        Ok(())
    }
}
