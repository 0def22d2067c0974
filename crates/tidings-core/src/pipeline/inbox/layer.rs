//! [`InboxLayer`].

use std::sync::Arc;

use super::{Inbox, InboxStore};

/// Adds the inbox dedup step.
#[derive(Clone)]
pub struct InboxLayer {
    store: Arc<dyn InboxStore>,
}

impl InboxLayer {
    /// Dedups with `store`.
    pub fn new(store: Arc<dyn InboxStore>) -> Self {
        InboxLayer { store }
    }
}

impl<S> tower::Layer<S> for InboxLayer {
    type Service = Inbox<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Inbox::new(inner, self.store.clone())
    }
}
