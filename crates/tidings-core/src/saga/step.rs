//! [`Step`]: what a saga handler can do besides returning the new state — send and
//! publish, request timeouts, record compensations, fail, complete. Nothing leaves until
//! the step commits: the store writes the state, the inbox row and these messages in one
//! transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::record::Compensation;
use crate::transport::{Destination, Outgoing};
use crate::{Command, ConsumeContext, Event, HandlerError, Message, SendOptions};

/// The header a saga timeout carries: the saga's name. A timeout whose id the saga does
/// not hold as armed (it moved on, or the timeout was handled already) is dropped.
pub const TIMEOUT_HEADER: &str = "tidings-saga-timeout";

/// The header every message a saga step sends carries: `<saga>/<key>`.
pub const SAGA_HEADER: &str = "tidings-saga";

/// One step of one saga instance: collects what the handler wants done.
pub struct Step<'a> {
    saga: &'a str,
    key: &'a str,
    ctx: &'a ConsumeContext,
    pub(crate) outgoing: Vec<Outgoing>,
    pub(crate) compensations: Vec<Compensation>,
    pub(crate) new_timeouts: Vec<Uuid>,
    pub(crate) cancel_timeouts: bool,
    pub(crate) completed: bool,
    pub(crate) failed: Option<String>,
}

impl std::fmt::Debug for Step<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("saga", &self.saga)
            .field("key", &self.key)
            .field("outgoing", &self.outgoing.len())
            .field("compensations", &self.compensations.len())
            .field("completed", &self.completed)
            .field("failed", &self.failed)
            .finish()
    }
}

fn err(e: crate::Error) -> HandlerError {
    // Building a message fails only on bad input (serialization, a command without a
    // route): retrying cannot help.
    HandlerError::permanent(e)
}

impl<'a> Step<'a> {
    pub(crate) fn new(
        saga: &'a str,
        key: &'a str,
        ctx: &'a ConsumeContext,
        compensations: Vec<Compensation>,
    ) -> Self {
        Step {
            saga,
            key,
            ctx,
            outgoing: Vec::new(),
            compensations,
            new_timeouts: Vec::new(),
            cancel_timeouts: false,
            completed: false,
            failed: None,
        }
    }

    /// The saga instance's correlation key.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The saga's name.
    pub fn saga(&self) -> &str {
        self.saga
    }

    /// The message being handled.
    pub fn context(&self) -> &ConsumeContext {
        self.ctx
    }

    fn opts(&self) -> SendOptions {
        self.ctx
            .follow_up()
            .header(SAGA_HEADER, format!("{}/{}", self.saga, self.key))
    }

    fn build<M: Message>(&self, msg: &M, opts: SendOptions) -> Result<Outgoing, HandlerError> {
        self.ctx.producer().outgoing(msg, opts).map_err(err)
    }

    /// Sends `cmd` when the step commits (correlation and causation carried over).
    pub fn send<C: Command>(&mut self, cmd: &C) -> Result<(), HandlerError> {
        let out = self.build(cmd, self.opts())?;
        self.outgoing.push(out);
        Ok(())
    }

    /// Publishes `event` when the step commits.
    pub fn publish<E: Event>(&mut self, event: &E) -> Result<(), HandlerError> {
        let out = self.build(event, self.opts())?;
        self.outgoing.push(out);
        Ok(())
    }

    /// Asks for `msg` to come back to this saga after `after`. Handle it with
    /// [`Saga::on`](super::Saga::on) like any message; if the saga moved to another state
    /// (or completed) before it arrives, it is dropped without running the handler.
    pub fn request_timeout<C: Command>(
        &mut self,
        msg: &C,
        after: Duration,
    ) -> Result<(), HandlerError> {
        let at = Utc::now() + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
        self.request_timeout_at(msg, at)
    }

    /// Like [`Step::request_timeout`], due at `at`.
    pub fn request_timeout_at<C: Command>(
        &mut self,
        msg: &C,
        at: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        // Outside the partition's order: on an ordered queue a scheduled message with a key
        // would hold back the key's later messages until it is due.
        let mut opts = self
            .opts()
            .header(TIMEOUT_HEADER, self.saga)
            .schedule_at(at);
        opts.partition_key = None;
        let out = self.build(msg, opts)?;
        self.new_timeouts.push(out.envelope.id);
        self.outgoing.push(out);
        Ok(())
    }

    /// Disarms every timeout requested so far (they arrive and are dropped). Timeouts are
    /// also disarmed when the saga changes state.
    pub fn cancel_timeouts(&mut self) {
        self.cancel_timeouts = true;
        self.new_timeouts.clear();
    }

    /// Records `cmd` as the undo of what this step did. If a later step calls
    /// [`Step::fail`], the recorded undos are sent newest first (routing-slip style). Make
    /// the receiving handler idempotent: a compensation can be delivered twice.
    pub fn compensate_with<C: Command>(&mut self, cmd: &C) -> Result<(), HandlerError> {
        let out = self.build(cmd, self.opts())?;
        let c = Compensation::from_outgoing(&out).map_err(err)?;
        self.compensations.push(c);
        Ok(())
    }

    /// Undo messages recorded so far (this step's included), oldest first.
    pub fn compensations(&self) -> &[Compensation] {
        &self.compensations
    }

    /// Forgets the recorded undos (e.g. once the business transaction can no longer fail).
    pub fn clear_compensations(&mut self) {
        self.compensations.clear();
    }

    /// The business transaction failed: sends every recorded undo, newest first, and
    /// forgets them (a second `fail` sends nothing). The handler still returns the new
    /// state (e.g. `Cancelled { reason }`), stored with this step.
    pub fn fail(&mut self, reason: impl Into<String>) -> Result<(), HandlerError> {
        let reason = reason.into();
        let opts = self.opts().header("tidings-saga-failure", reason.clone());
        while let Some(c) = self.compensations.pop() {
            let mut env = c.envelope().map_err(err)?;
            let o = opts.clone();
            env.correlation_id = o
                .correlation_id
                .or_else(|| Some(Uuid::now_v7().to_string()));
            env.causation_id = o.causation_id;
            env.conversation_id = o.conversation_id;
            env.partition_key = o.partition_key;
            env.headers = o.headers;
            env.source_endpoint = Some(self.ctx.endpoint().to_string());
            crate::telemetry::inject_current(&mut env);
            let destination = match c.queue {
                Some(q) => Destination::Queue(q),
                None => Destination::Topic,
            };
            self.outgoing.push(Outgoing {
                destination,
                envelope: env,
            });
        }
        self.failed = Some(reason);
        Ok(())
    }

    /// The reason given to [`Step::fail`], if this step failed the saga.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Marks the saga complete when this step commits: removed, or kept for the saga's
    /// retention window ([`Completion`](super::Completion)). Armed timeouts are disarmed.
    pub fn complete(&mut self) {
        self.completed = true;
        self.cancel_timeouts();
    }
}
