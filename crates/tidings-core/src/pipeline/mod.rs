//! The consumer pipeline: tower [`Layer`](tower::Layer)s around the handler dispatcher,
//! outermost first — trace → metrics → deserialize → inbox → circuit breaker → retry →
//! handle span → timeout → catch panic → user layers → dispatcher (the handler), as
//! `Endpoint::build_pipeline` assembles it (inbox, breaker, retry and timeout only when
//! configured). One folder per middleware (`mod.rs` = the Service, `layer.rs` = the
//! Layer), as in tower.
//!
//! Every step is a `Service<Consume, Response = (), Error = HandlerError>`; users insert
//! their own layers with [`Endpoint::layer`](crate::Endpoint::layer) (innermost: around
//! the handler, once per attempt).

pub mod breaker;
pub mod catch_panic;
pub mod deserialize;
pub mod dispatch;
pub mod inbox;
pub mod metrics;
pub mod retry;
pub mod timeout;
pub mod trace;

use crate::context::ConsumeContext;
use crate::handler::HandlerError;

pub use dispatch::{Decoded, Dispatcher};

/// The request every pipeline step takes: the context (envelope, producer) and, once the
/// deserialize step ran, the decoded message.
#[derive(Clone)]
pub struct Consume {
    /// The message's context.
    pub ctx: ConsumeContext,
    /// The decoded message (set by the deserialize layer).
    pub message: Option<Decoded>,
}

impl std::fmt::Debug for Consume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consume")
            .field("ctx", &self.ctx)
            .field("decoded", &self.message.is_some())
            .finish()
    }
}

impl Consume {
    /// A request for `ctx`, not decoded yet.
    pub fn new(ctx: ConsumeContext) -> Self {
        Consume { ctx, message: None }
    }
}

/// A boxed, cloneable pipeline service.
pub type BoxPipeline = tower::util::BoxCloneSyncService<Consume, (), HandlerError>;
