//! [`DeserializeLayer`].

use super::Deserialize;
use crate::pipeline::Dispatcher;

/// Adds the deserialize step.
#[derive(Clone, Debug)]
pub struct DeserializeLayer {
    dispatcher: Dispatcher,
}

impl DeserializeLayer {
    /// Decodes with `dispatcher`'s contracts.
    pub fn new(dispatcher: Dispatcher) -> Self {
        DeserializeLayer { dispatcher }
    }
}

impl<S> tower::Layer<S> for DeserializeLayer {
    type Service = Deserialize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deserialize::new(inner, self.dispatcher.clone())
    }
}
