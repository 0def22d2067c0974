//! Sagas (process managers): a typed state plus handlers per message, each step one
//! transaction.
//!
//! A [`Saga`] is defined once: its name, the messages that start it
//! ([`Saga::starts_with`]), the messages it handles once started ([`Saga::on`]), each with
//! the way it finds its instance (a correlation key taken from the message), what happens
//! when an instance is missing ([`Saga::when_missing`]) and what happens to finished ones
//! ([`Saga::completion`]). [`Saga::attach`] installs it on an [`Endpoint`] with a
//! [`SagaStore`].
//!
//! Handlers are pure: they get the state and the message and return the new state; what
//! they want done goes through the [`Step`] — messages to send or publish, timeouts
//! ([`Step::request_timeout`]), undo messages ([`Step::compensate_with`], sent newest first
//! by [`Step::fail`]), completion ([`Step::complete`]). The store then commits, in one
//! transaction, the inbox row of the message (a duplicate delivery does nothing), the new
//! state (optimistic concurrency: a conflict re-runs the step) and the outgoing messages.
//!
//! A timeout is a scheduled message carrying the saga's name in a header; the saga keeps
//! the ids of its armed timeouts and drops any other — so a timeout that arrives after the
//! saga changed state, completed, or was handled once already has no effect.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use tidings_core::saga::{MemorySagaStore, Saga, SagaState};
//! use tidings_core::{Endpoint, TestHarness};
//! # use tidings_core::{Command, Event, Message, MessageKind};
//! # // (`#[derive(Message)]` does not work in this crate's own doc tests: spelled out.)
//! # macro_rules! contract { ($t:ident, $n:literal, $k:ident, $m:ident) => {
//! #     impl Message for $t { const NAME: &'static str = $n; const VERSION: u32 = 1;
//! #         const KIND: MessageKind = MessageKind::$k; }
//! #     impl $m for $t {} } }
//! # contract!(OrderPlaced, "doc.order-placed", Event, Event);
//! # contract!(PaymentTimeout, "doc.payment-timeout", Command, Command);
//! # contract!(OrderCancelled, "doc.order-cancelled", Event, Event);
//!
//! #[derive(Serialize, Deserialize)] // + #[derive(Message)] #[message(name = .., kind = "event")]
//! struct OrderPlaced { order: u32 }
//! #[derive(Serialize, Deserialize)] // a command
//! struct PaymentTimeout { order: u32 }
//! #[derive(Serialize, Deserialize)] // an event
//! struct OrderCancelled { order: u32 }
//!
//! #[derive(Serialize, Deserialize)]
//! enum Order { Paying, Cancelled }
//! impl SagaState for Order {
//!     fn name(&self) -> &str {
//!         match self { Order::Paying => "paying", Order::Cancelled => "cancelled" }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> anyhow::Result<()> {
//! let saga = Saga::<Order>::new("order")
//!     .starts_with(|m: &OrderPlaced| m.order, |m, step| {
//!         step.request_timeout(&PaymentTimeout { order: m.order }, Duration::from_secs(30))?;
//!         Ok(Order::Paying)
//!     })
//!     .on(|m: &PaymentTimeout| m.order, |_state, m, step| {
//!         step.publish(&OrderCancelled { order: m.order })?;
//!         step.complete();
//!         Ok(Order::Cancelled)
//!     });
//! let store = Arc::new(MemorySagaStore::new());
//! let harness = TestHarness::start(|b| {
//!     b.endpoint(saga.attach(Endpoint::new("order-saga").sends::<OrderCancelled>(), store))
//!         .sends::<OrderPlaced>()
//! })
//! .await?;
//! harness.bus.publish(&OrderPlaced { order: 7 }).await?;
//! // Paused tokio time: the 30 s timeout fires at once.
//! assert!(harness
//!     .wait_until(Duration::from_secs(60), |h| h.published::<OrderCancelled>().len() == 1)
//!     .await);
//! harness.stop().await;
//! # Ok(()) }
//! ```

mod endpoint;
pub mod query;
pub mod record;
pub mod step;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Endpoint, HandlerError, Message};

pub use query::{SagaQueries, SagaQuery, SagaSummary};
pub use record::{Compensation, Decision, SagaMeta, SagaRecord, SagaStatus, Write};
pub use step::Step;
pub use store::{Decide, MemorySagaStore, SagaStore, StepOutcome};

/// A saga's typed state. `name` is the state's name for operators (listing sagas by
/// state) and for timeouts (a change of name disarms the timeouts requested before).
pub trait SagaState: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The current state's name, e.g. `"paying"`.
    fn name(&self) -> &str;
}

/// What a message that finds no saga instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missing {
    /// Acked without effect (logged at debug).
    Ignore,
    /// A permanent failure: the message goes to the error queue with the reason.
    #[default]
    Error,
}

/// What happens to a saga that completed ([`Step::complete`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Completion {
    /// Removed in the completing step (later messages find no saga).
    #[default]
    Remove,
    /// Kept (status `completed`) for this long, still receiving messages; after that it
    /// counts as missing, and a store's sweep may delete it.
    KeepFor(Duration),
    /// Kept for ever (e.g. when reports read it).
    Keep,
}

type KeyFn<M> = Arc<dyn Fn(&M) -> String + Send + Sync>;
type StartFn<S, M> = Arc<dyn Fn(&M, &mut Step<'_>) -> Result<S, HandlerError> + Send + Sync>;
type OnFn<S, M> = Arc<dyn Fn(S, &M, &mut Step<'_>) -> Result<S, HandlerError> + Send + Sync>;
type Install = Arc<dyn Fn(Endpoint, Arc<endpoint::Core>, Missing) -> Endpoint + Send + Sync>;

struct Route {
    missing: Missing,
    install: Install,
}

/// A saga definition: its name, its handlers and policies. See the [module docs](self).
pub struct Saga<S> {
    name: String,
    completion: Completion,
    conflict_retries: u32,
    routes: Vec<Route>,
    _state: std::marker::PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for Saga<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saga")
            .field("name", &self.name)
            .field("completion", &self.completion)
            .field("messages", &self.routes.len())
            .finish()
    }
}

impl<S: SagaState> Saga<S> {
    /// A saga named `name` (stored with its instances; keep it stable).
    pub fn new(name: impl Into<String>) -> Self {
        Saga {
            name: name.into(),
            completion: Completion::Remove,
            conflict_retries: 5,
            routes: Vec::new(),
            _state: std::marker::PhantomData,
        }
    }

    /// The saga's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `M` starts a saga: `key` finds the instance; if there is none, `start` makes its
    /// first state. If the instance exists already, `M` is ignored (a start is idempotent).
    pub fn starts_with<M, K>(
        mut self,
        key: impl Fn(&M) -> K + Send + Sync + 'static,
        start: impl Fn(&M, &mut Step<'_>) -> Result<S, HandlerError> + Send + Sync + 'static,
    ) -> Self
    where
        M: Message,
        K: std::fmt::Display,
    {
        let handle = endpoint::Handle::<S, M>::Start(Arc::new(start));
        self.routes.push(Route {
            missing: Missing::Error,
            install: endpoint::install(key_fn(key), handle),
        });
        self
    }

    /// `M` moves a started saga on: `key` finds the instance, `handle` turns its state
    /// into the next. If there is no instance, the [`Missing`] policy applies (default
    /// [`Missing::Error`]; set it with [`Saga::when_missing`] right after this call).
    pub fn on<M, K>(
        mut self,
        key: impl Fn(&M) -> K + Send + Sync + 'static,
        handle: impl Fn(S, &M, &mut Step<'_>) -> Result<S, HandlerError> + Send + Sync + 'static,
    ) -> Self
    where
        M: Message,
        K: std::fmt::Display,
    {
        let handle = endpoint::Handle::<S, M>::On(Arc::new(handle));
        self.routes.push(Route {
            missing: Missing::Error,
            install: endpoint::install(key_fn(key), handle),
        });
        self
    }

    /// The missing-instance policy of the message registered last.
    pub fn when_missing(mut self, missing: Missing) -> Self {
        if let Some(r) = self.routes.last_mut() {
            r.missing = missing;
        }
        self
    }

    /// What happens to completed sagas (default [`Completion::Remove`]).
    pub fn completion(mut self, completion: Completion) -> Self {
        self.completion = completion;
        self
    }

    /// How many times a step that lost an optimistic-concurrency race is re-run at once
    /// (default 5) before it fails as a transient error (then the endpoint's retry and
    /// redelivery policies apply).
    pub fn conflict_retries(mut self, n: u32) -> Self {
        self.conflict_retries = n;
        self
    }

    /// Installs the saga's handlers on `endpoint`, persisting in `store`. Declare on the
    /// endpoint what the steps send (`.sends::<M>()`); make it `.ordered(true)` and send
    /// the saga's messages with the saga key as partition key to avoid conflicts.
    pub fn attach(self, endpoint: Endpoint, store: Arc<dyn SagaStore>) -> Endpoint {
        let core = Arc::new(endpoint::Core {
            name: self.name,
            completion: self.completion,
            conflict_retries: self.conflict_retries,
            store,
        });
        self.routes
            .into_iter()
            .fold(endpoint, |ep, r| (r.install)(ep, core.clone(), r.missing))
    }
}

fn key_fn<M, K: std::fmt::Display>(f: impl Fn(&M) -> K + Send + Sync + 'static) -> KeyFn<M> {
    Arc::new(move |m| f(m).to_string())
}
