//! Handlers: the [`Handler`] trait users implement (or a closure), and [`HandlerError`],
//! which says whether a failure is worth retrying.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use crate::context::ConsumeContext;
use crate::{ErrorKind, FaultReason, Message};

/// A failed handling. Transient by default (retried, then redelivered, then dead-lettered);
/// [`HandlerError::permanent`] goes straight to the error queue.
#[derive(Debug)]
pub struct HandlerError {
    kind: ErrorKind,
    reason: FaultReason,
    message: String,
    defer: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl HandlerError {
    /// A transient failure: retried per the endpoint's policies.
    pub fn transient(message: impl std::fmt::Display) -> Self {
        HandlerError {
            kind: ErrorKind::Transient,
            reason: FaultReason::HandlerFailed,
            message: message.to_string(),
            defer: None,
            source: None,
        }
    }

    /// A permanent failure (validation, business rule): no retries, straight to the error queue.
    pub fn permanent(message: impl std::fmt::Display) -> Self {
        HandlerError {
            kind: ErrorKind::Permanent,
            ..Self::transient(message)
        }
    }

    /// A failure with a specific fault reason (used by the pipeline: undeserializable, panicked ...).
    pub fn with_reason(
        reason: FaultReason,
        kind: ErrorKind,
        message: impl std::fmt::Display,
    ) -> Self {
        HandlerError {
            kind,
            reason,
            ..Self::transient(message)
        }
    }

    /// Not a failure: deliver again after `delay` without counting an error (open breaker).
    pub fn defer(delay: Duration, message: impl std::fmt::Display) -> Self {
        HandlerError {
            defer: Some(delay),
            ..Self::transient(message)
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Transient or permanent.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retries are skipped.
    pub fn is_permanent(&self) -> bool {
        self.kind == ErrorKind::Permanent
    }

    /// The fault reason the error queue will record.
    pub fn reason(&self) -> FaultReason {
        self.reason
    }

    /// The deferral asked for, if this is a deferral rather than a failure.
    pub fn deferral(&self) -> Option<Duration> {
        self.defer
    }

    /// The error's text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying error, if any.
    pub fn source_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl From<crate::Error> for HandlerError {
    fn from(e: crate::Error) -> Self {
        let kind = e.kind();
        HandlerError {
            kind,
            reason: FaultReason::HandlerFailed,
            message: e.to_string(),
            defer: None,
            source: Some(Box::new(e)),
        }
    }
}

/// Handles one message type. Implement it, or pass an async closure
/// `|msg: M, ctx: ConsumeContext| async move { .. }` to the endpoint.
#[async_trait]
pub trait Handler<M: Message>: Send + Sync + 'static {
    /// Handles `msg`. `Ok` acks it.
    async fn handle(&self, msg: M, ctx: ConsumeContext) -> Result<(), HandlerError>;
}

/// Wraps an async closure as a [`Handler`].
pub struct HandlerFn<F>(pub F);

#[async_trait]
impl<M, F, Fut> Handler<M> for HandlerFn<F>
where
    M: Message,
    F: Fn(M, ConsumeContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, msg: M, ctx: ConsumeContext) -> Result<(), HandlerError> {
        (self.0)(msg, ctx).await
    }
}
