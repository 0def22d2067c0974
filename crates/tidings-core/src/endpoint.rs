//! [`Endpoint`]: a queue with its handlers, settings and consumer pipeline, built fluently
//! and validated when the bus starts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tower::util::Either;
use tower::Layer as _;

use crate::handler::{Handler, HandlerError};
use crate::pipeline::catch_panic::CatchPanicLayer;
use crate::pipeline::deserialize::DeserializeLayer;
use crate::pipeline::dispatch::HandlerTable;
use crate::pipeline::inbox::{InboxLayer, InboxStore};
use crate::pipeline::metrics::MetricsLayer;
use crate::pipeline::timeout::TimeoutLayer;
use crate::pipeline::trace::{HandleSpanLayer, TraceLayer};
use crate::pipeline::{BoxPipeline, Consume};
use crate::{ConsumeContext, ContractId, ErrorKind, Message, MessageKind};

/// Wraps the pipeline built so far in one more step.
pub(crate) type LayerFn = Arc<dyn Fn(BoxPipeline) -> BoxPipeline + Send + Sync>;

/// Delayed redeliveries ("second-level retries"): after immediate retries fail, the message
/// goes back to the queue after `delays[n]` on its n-th failed delivery; once they run out, to
/// the error queue. Counted by the transport's delivery count.
///
/// ```
/// use std::time::Duration;
/// use tidings_core::Redelivery;
///
/// let r = Redelivery::intervals([Duration::from_secs(5), Duration::from_secs(30)]);
/// assert_eq!(r.delay_for(1), Some(Duration::from_secs(5))); // after the 1st failed delivery
/// assert_eq!(r.delay_for(2), Some(Duration::from_secs(30)));
/// assert_eq!(r.delay_for(3), None); // used up: to the error queue
/// assert_eq!(Redelivery::none().delay_for(1), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redelivery {
    /// Delay before each redelivery.
    pub delays: Vec<Duration>,
}

impl Redelivery {
    /// Redeliver after each of `delays`.
    pub fn intervals(delays: impl IntoIterator<Item = Duration>) -> Self {
        Redelivery {
            delays: delays.into_iter().collect(),
        }
    }

    /// No delayed redelivery: dead-letter after immediate retries.
    pub fn none() -> Self {
        Redelivery::default()
    }

    /// The delay for a message that failed on delivery `delivery_count` (1-based), or
    /// `None` when redeliveries are used up.
    pub fn delay_for(&self, delivery_count: u32) -> Option<Duration> {
        self.delays
            .get(delivery_count.saturating_sub(1) as usize)
            .copied()
    }
}

/// Settings of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    /// Deliveries taken ahead of handling.
    pub prefetch: usize,
    /// Handlers running at once.
    pub concurrency: usize,
    /// One message in flight per partition key.
    pub ordered: bool,
    /// Park a key behind its dead letter (ordered endpoints).
    pub park_on_dead_letter: bool,
    /// Largest accepted envelope in bytes; larger ones go to the error queue.
    pub max_message_size: usize,
    /// Lease (visibility timeout); renewed while the handler runs.
    pub lease: Duration,
    /// Delayed redeliveries.
    pub redelivery: Redelivery,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        EndpointSettings {
            prefetch: 64,
            concurrency: 16,
            ordered: false,
            park_on_dead_letter: false,
            max_message_size: 1024 * 1024,
            lease: Duration::from_secs(30),
            redelivery: Redelivery::intervals([
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ]),
        }
    }
}

/// One contract an endpoint handles, sends or publishes (for validation and diagrams).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContractUse {
    /// The contract.
    pub id: ContractId,
    /// Event or command.
    pub kind: MessageKind,
    /// Rust type name.
    pub rust_type: &'static str,
}

impl ContractUse {
    pub(crate) fn of<M: Message>() -> Self {
        ContractUse {
            id: ContractId::of::<M>(),
            kind: M::KIND,
            rust_type: std::any::type_name::<M>(),
        }
    }
}

/// An endpoint: a named queue, its handlers, settings and pipeline.
///
/// A handler failing transiently is first retried in place ([`Endpoint::retry`]), then
/// redelivered later ([`Endpoint::redelivery`]), then dead-lettered. Here the first
/// delivery fails twice (attempt and retry), the redelivery succeeds; under paused tokio
/// time ([`TestHarness`](crate::TestHarness)) the delays pass at once:
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use tidings_core::pipeline::retry::Intervals;
/// use tidings_core::{ConsumeContext, Endpoint, HandlerError, Message, Redelivery, TestHarness};
///
/// #[derive(Serialize, Deserialize, Message)]
/// #[message(name = "shop.charge-card", kind = "command")]
/// struct ChargeCard { order_id: u32 }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> anyhow::Result<()> {
/// let calls = Arc::new(AtomicU32::new(0));
/// let seen = calls.clone();
/// let payments = Endpoint::new("payments")
///     .retry(Intervals(vec![Duration::from_millis(200)]))
///     .redelivery(Redelivery::intervals([Duration::from_secs(10)]))
///     .handle_fn(move |_: ChargeCard, ctx: ConsumeContext| {
///         let seen = seen.clone();
///         async move {
///             seen.fetch_add(1, Ordering::SeqCst);
///             match ctx.delivery_count() {
///                 1 => Err(HandlerError::transient("gateway timeout")),
///                 _ => Ok(()),
///             }
///         }
///     });
/// let h = TestHarness::start(|b| b.endpoint(payments).sends::<ChargeCard>()).await?;
/// h.bus.send(&ChargeCard { order_id: 9 }).await?;
/// assert!(h.wait_until(Duration::from_secs(60), |h| !h.consumed(ChargeCard::NAME).is_empty()).await);
/// assert_eq!(calls.load(Ordering::SeqCst), 3); // delivery 1: attempt + retry; delivery 2: ok
/// assert!(h.dead_letters().await?.is_empty());
/// h.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) name: String,
    pub(crate) settings: EndpointSettings,
    pub(crate) handlers: HandlerTable,
    pub(crate) handles: BTreeSet<ContractUse>,
    pub(crate) sends: BTreeSet<ContractUse>,
    pub(crate) errors: Vec<String>,
    pub(crate) inbox: Option<Arc<dyn InboxStore>>,
    pub(crate) retry: Option<LayerFn>,
    pub(crate) breaker: Option<LayerFn>,
    pub(crate) timeout: Option<Duration>,
    /// What a caught panic becomes.
    pub(crate) panic_kind: ErrorKind,
    pub(crate) user_layers: Vec<LayerFn>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("handles", &self.handles)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A new endpoint consuming queue `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let mut errors = Vec::new();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            errors.push(format!(
                "endpoint name `{name}` must be non-empty ASCII letters, digits, '-', '_' or '.'"
            ));
        }
        Endpoint {
            name,
            settings: EndpointSettings::default(),
            handlers: HandlerTable::default(),
            handles: BTreeSet::new(),
            sends: BTreeSet::new(),
            errors,
            inbox: None,
            retry: None,
            breaker: None,
            timeout: None,
            panic_kind: ErrorKind::Permanent,
            user_layers: Vec::new(),
        }
    }

    /// The endpoint's (queue) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Handles `M` with `handler`: a command is routed here; an event is subscribed to.
    pub fn handle<M: Message, H: Handler<M>>(mut self, handler: H) -> Self {
        if let Err(e) = self.handlers.handle::<M, H>(handler) {
            self.errors.push(format!("endpoint `{}`: {e}", self.name));
        }
        self.handles.insert(ContractUse::of::<M>());
        self
    }

    /// Handles `M` with an async closure `|msg: M, ctx: ConsumeContext| async move { .. }`.
    pub fn handle_fn<M, F, Fut>(mut self, f: F) -> Self
    where
        M: Message,
        F: Fn(M, ConsumeContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        if let Err(e) = self.handlers.handle_fn::<M, F, Fut>(f) {
            self.errors.push(format!("endpoint `{}`: {e}", self.name));
        }
        self.handles.insert(ContractUse::of::<M>());
        self
    }

    /// Also accepts `Old` (an older version of `New`'s contract), converted with `From`.
    /// Register `New`'s handler first.
    pub fn upcast<Old: Message, New: Message + From<Old>>(mut self) -> Self {
        if let Err(e) = self.handlers.upcast::<Old, New>() {
            self.errors.push(format!("endpoint `{}`: {e}", self.name));
        }
        self.handles.insert(ContractUse::of::<Old>());
        self
    }

    /// Declares that handlers here send or publish `M` (validated at start-up; drawn in
    /// topology diagrams).
    pub fn sends<M: Message>(mut self) -> Self {
        self.sends.insert(ContractUse::of::<M>());
        self
    }

    /// Deliveries taken ahead of handling (default 64).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.settings.prefetch = n;
        self
    }

    /// Handlers running at once (default 16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n;
        self
    }

    /// One message in flight per partition key; keys in parallel.
    pub fn ordered(mut self, on: bool) -> Self {
        self.settings.ordered = on;
        self
    }

    /// On an ordered endpoint, a dead-lettered message parks its key: later messages with
    /// that key wait until the dead letter is replayed or purged.
    pub fn park_on_dead_letter(mut self, on: bool) -> Self {
        self.settings.park_on_dead_letter = on;
        self
    }

    /// Largest accepted envelope (body + headers) in bytes (default 1 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes;
        self
    }

    /// Lease / visibility timeout (default 30 s), renewed while a handler runs.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease;
        self
    }

    /// Delayed redelivery schedule (default 5 s, 30 s, 2 min).
    ///
    /// With [`Redelivery::none`] and no retries, a failing message goes to the endpoint's
    /// error queue after its first delivery:
    ///
    /// ```
    /// use std::time::Duration;
    /// use serde::{Deserialize, Serialize};
    /// use tidings_core::{ConsumeContext, Endpoint, HandlerError, Message, Redelivery, TestHarness};
    ///
    /// #[derive(Serialize, Deserialize, Message)]
    /// #[message(name = "shop.ship-order", kind = "command")]
    /// struct ShipOrder { order_id: u32 }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> anyhow::Result<()> {
    /// let shipping = Endpoint::new("shipping")
    ///     .redelivery(Redelivery::none())
    ///     .handle_fn(|_: ShipOrder, _: ConsumeContext| async {
    ///         Err(HandlerError::transient("carrier down"))
    ///     });
    /// let h = TestHarness::start(|b| b.endpoint(shipping).sends::<ShipOrder>()).await?;
    /// h.bus.send(&ShipOrder { order_id: 4 }).await?;
    /// assert!(h.wait_until(Duration::from_secs(5), |h| h.faulted(ShipOrder::NAME).len() == 1).await);
    /// let dead = h.dead_letters().await?;
    /// assert_eq!(dead.len(), 1);
    /// assert_eq!(dead[0].queue, "shipping");
    /// assert_eq!(dead[0].envelope.header("tidings-fault-error"), Some("carrier down"));
    /// h.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn redelivery(mut self, redelivery: Redelivery) -> Self {
        self.settings.redelivery = redelivery;
        self
    }

    /// Immediate retries within one delivery (e.g. `Intervals(vec![..])` or
    /// `Exponential::new(..)`); none by default.
    ///
    /// A policy tells, after failed attempt `n` of a delivery, how long to wait before the
    /// next one (`None`: give up, then redelivery or the error queue take over):
    ///
    /// ```
    /// use std::time::Duration;
    /// use tidings_core::pipeline::retry::{Exponential, Intervals, NoRetry, RetryPolicy};
    /// use tidings_core::{Endpoint, HandlerError};
    ///
    /// let busy = HandlerError::transient("busy");
    /// let ms = Duration::from_millis;
    ///
    /// let fixed = Intervals::fixed(2, ms(100));
    /// assert_eq!(fixed.next_delay(1, &busy), Some(ms(100)));
    /// assert_eq!(fixed.next_delay(3, &busy), None); // 2 retries = 3 attempts
    ///
    /// // 100 ms doubling, capped at 1 s, 5 retries; without jitter for exact numbers.
    /// let backoff = Exponential::new(ms(100), Duration::from_secs(1), 5).jitter(0.0);
    /// let waits: Vec<_> = (1..=6).map(|n| backoff.next_delay(n, &busy)).collect();
    /// assert_eq!(waits, [Some(ms(100)), Some(ms(200)), Some(ms(400)), Some(ms(800)), Some(ms(1000)), None]);
    /// // With jitter (default 20%) each wait lies in [80%, 100%] of the base wait.
    /// let jittered = Exponential::new(ms(100), Duration::from_secs(1), 5);
    /// let w = jittered.next_delay(2, &busy).unwrap();
    /// assert!(w >= ms(160) && w <= ms(200), "{w:?}");
    ///
    /// // Retry only what the handler knows to be passing; others fail at once.
    /// let only_busy = Intervals::fixed(3, ms(50)).filter(|e| e.message().contains("busy"));
    /// assert_eq!(only_busy.next_delay(1, &busy), Some(ms(50)));
    /// assert_eq!(only_busy.next_delay(1, &HandlerError::transient("bad gateway")), None);
    /// assert_eq!(NoRetry.next_delay(1, &busy), None);
    ///
    /// let _endpoint = Endpoint::new("payments").retry(backoff);
    /// ```
    pub fn retry<P: crate::pipeline::retry::RetryPolicy + Clone>(mut self, policy: P) -> Self {
        self.retry = Some(layer_fn(crate::pipeline::retry::RetryLayer::new(policy)));
        self
    }

    /// Fails an attempt that runs longer than `limit` (reason `timed-out`, transient).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Circuit breaker: after too many transient failures in a window, deliveries are
    /// deferred (redelivered later, not failed) until a half-open probe succeeds.
    pub fn breaker(mut self, config: crate::pipeline::breaker::BreakerConfig) -> Self {
        self.breaker = Some(layer_fn(
            crate::pipeline::breaker::CircuitBreakerLayer::new(config),
        ));
        self
    }

    /// Treats a panic as transient (retried) instead of permanent (the default).
    pub fn panics_are_transient(mut self) -> Self {
        self.panic_kind = ErrorKind::Transient;
        self
    }

    /// Skips messages this endpoint already handled, remembered in `store`.
    pub fn inbox(mut self, store: Arc<dyn InboxStore>) -> Self {
        self.inbox = Some(store);
        self
    }

    /// Adds a user layer, innermost (just around the handler, once per attempt). Layers
    /// added first run outermost among user layers.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<BoxPipeline> + Send + Sync + 'static,
        L::Service: tower::Service<Consume, Response = (), Error = HandlerError>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<Consume>>::Future: Send + 'static,
    {
        self.user_layers.push(layer_fn(layer));
        self
    }

    /// Assembles the pipeline, outermost first: trace → metrics → deserialize → inbox →
    /// breaker → retry → handle span → timeout → catch panic → user layers → handler.
    ///
    /// The steps every endpoint has (trace, metrics, deserialize, handle span, timeout,
    /// catch panic, dispatcher) are one concrete service, boxed once: a box per step is an
    /// allocation and an indirect call per message. Optional steps in between (inbox,
    /// breaker, retry) and user layers are boxed where they are.
    pub(crate) fn build_pipeline(&self) -> BoxPipeline {
        let dispatcher = self.handlers.clone().into_dispatcher();
        let handler = if self.user_layers.is_empty() {
            Either::Left(dispatcher.clone())
        } else {
            let mut svc = BoxPipeline::new(dispatcher.clone());
            for l in self.user_layers.iter().rev() {
                svc = l(svc);
            }
            Either::Right(svc)
        };
        let caught = CatchPanicLayer::new().kind(self.panic_kind).layer(handler);
        let timed = match self.timeout {
            Some(limit) => Either::Left(TimeoutLayer::new(limit).layer(caught)),
            None => Either::Right(caught),
        };
        let attempt = HandleSpanLayer.layer(timed);
        let middle = [&self.retry, &self.breaker].into_iter().flatten();
        let inbox = self
            .inbox
            .as_ref()
            // The receive loop records with the ack (`receive::ack`).
            .map(|store| layer_fn(InboxLayer::check_only(store.clone())));
        let mut middle = middle.chain(inbox.as_ref()).peekable();
        let inner = if middle.peek().is_none() {
            Either::Left(attempt)
        } else {
            let mut svc = BoxPipeline::new(attempt);
            for l in middle {
                svc = l(svc);
            }
            Either::Right(svc)
        };
        let outer = DeserializeLayer::new(dispatcher).layer(inner);
        BoxPipeline::new(TraceLayer.layer(MetricsLayer.layer(outer)))
    }
}

/// Type-erases a layer over the boxed pipeline.
pub(crate) fn layer_fn<L>(layer: L) -> LayerFn
where
    L: tower::Layer<BoxPipeline> + Send + Sync + 'static,
    L::Service: tower::Service<Consume, Response = (), Error = HandlerError>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<Consume>>::Future: Send + 'static,
{
    Arc::new(move |inner| BoxPipeline::new(layer.layer(inner)))
}
