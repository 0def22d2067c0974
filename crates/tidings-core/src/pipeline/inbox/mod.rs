//! Inbox dedup step: a message already handled by this endpoint (same message id) is
//! skipped and acked without running the handler. The check happens before the handler and
//! the record after it succeeds, so a failed attempt can be retried.
//!
//! With a non-transactional store a crash between the handler's effect and the record can
//! still repeat an effect; the SQLite/PostgreSQL transactional handlers close that gap by
//! writing the inbox row in the handler's own transaction.
//!
//! An endpoint's inbox ([`Endpoint::inbox`](crate::Endpoint::inbox)) uses the check-only
//! form ([`InboxLayer::check_only`]): its receive loop records after the pipeline
//! succeeded, together with the ack — in the ack's own commit when the store lives in the
//! transport's database ([`InboxStore::home`]), so a message costs no commit of its own.

mod layer;
mod store;

pub use layer::InboxLayer;
pub use store::{InboxStore, MemoryInbox};

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use super::Consume;
use crate::handler::HandlerError;
use crate::telemetry::names;

/// Skips duplicates found in an [`InboxStore`].
#[derive(Clone)]
pub struct Inbox<S> {
    inner: S,
    store: Arc<dyn InboxStore>,
    record: bool,
}

impl<S> Inbox<S> {
    /// Wraps `inner`: checks before, records after success.
    pub fn new(inner: S, store: Arc<dyn InboxStore>) -> Self {
        Inbox {
            inner,
            store,
            record: true,
        }
    }

    /// Wraps `inner`: checks only; the caller records after success (with the ack).
    pub fn check_only(inner: S, store: Arc<dyn InboxStore>) -> Self {
        Inbox {
            inner,
            store,
            record: false,
        }
    }
}

impl<S> tower::Service<Consume> for Inbox<S>
where
    S: tower::Service<Consume, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Consume) -> Self::Future {
        let store = self.store.clone();
        let record = self.record;
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        Box::pin(async move {
            let id = req.ctx.message_id();
            let endpoint = req.ctx.endpoint().to_string();
            if store.seen(id, &endpoint).await? {
                metrics::counter!(names::DUPLICATES, "endpoint" => endpoint).increment(1);
                tracing::debug!(%id, "duplicate delivery skipped by the inbox");
                return Ok(());
            }
            inner.call(req).await?;
            if record {
                store.record(id, &endpoint).await?;
            }
            Ok(())
        })
    }
}
