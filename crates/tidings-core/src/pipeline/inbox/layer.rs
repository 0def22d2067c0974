//! [`InboxLayer`].

use std::sync::Arc;

use super::{Inbox, InboxStore};

/// Adds the inbox dedup step.
#[derive(Clone)]
pub struct InboxLayer {
    store: Arc<dyn InboxStore>,
    record: bool,
}

impl InboxLayer {
    /// Dedups with `store`: checks before the inner service, records after it succeeded.
    pub fn new(store: Arc<dyn InboxStore>) -> Self {
        InboxLayer {
            store,
            record: true,
        }
    }

    /// Checks `store` only; whoever settles the message records it (the receive loop
    /// records with the ack, see [`Settle::ack_recording`](crate::transport::Settle::ack_recording)).
    pub fn check_only(store: Arc<dyn InboxStore>) -> Self {
        InboxLayer {
            store,
            record: false,
        }
    }
}

impl<S> tower::Layer<S> for InboxLayer {
    type Service = Inbox<S>;

    fn layer(&self, inner: S) -> Self::Service {
        if self.record {
            Inbox::new(inner, self.store.clone())
        } else {
            Inbox::check_only(inner, self.store.clone())
        }
    }
}
