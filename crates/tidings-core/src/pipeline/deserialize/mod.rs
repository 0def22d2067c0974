//! Deserialize step: decodes the body for its contract (upcasts included). An unknown type
//! or version, or a body that does not decode, fails permanently with reason
//! `unknown-type` / `undeserializable` — the message goes to the error queue.

mod layer;

pub use layer::DeserializeLayer;

use std::task::{Context, Poll};

use futures::future::{Either, Ready};

use super::{Consume, Dispatcher};
use crate::handler::HandlerError;

/// Decodes the message before inner steps run.
#[derive(Clone, Debug)]
pub struct Deserialize<S> {
    inner: S,
    dispatcher: Dispatcher,
}

impl<S> Deserialize<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, dispatcher: Dispatcher) -> Self {
        Deserialize { inner, dispatcher }
    }
}

impl<S> tower::Service<Consume> for Deserialize<S>
where
    S: tower::Service<Consume, Response = (), Error = HandlerError>,
{
    type Response = ();
    type Error = HandlerError;
    type Future = Either<S::Future, Ready<Result<(), HandlerError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Consume) -> Self::Future {
        match self.dispatcher.decode(req.ctx.envelope()) {
            Ok(d) => {
                req.message = Some(d);
                Either::Left(self.inner.call(req))
            }
            Err(e) => Either::Right(futures::future::ready(Err(e))),
        }
    }
}
