//! The [`Bus`]: validated topology, running endpoints, publish / send / schedule /
//! request, and graceful shutdown. Built with [`BusBuilder`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{oneshot, OnceCell};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::endpoint::{ContractUse, Endpoint};
use crate::envelope::headers;
use crate::observe::Observer;
use crate::producer::{Producer, SendOptions};
use crate::receive::{self, EndpointRuntime};
use crate::topology::{self, TopologyReport};
use crate::transport::{Destination, Outgoing, QueueSpec, ReceiveOptions, Topology, Transport};
use crate::{
    Command, Envelope, Error, Event, JsonSerializer, Message, MessageKind, Result, Serializer,
};

/// Builds a [`Bus`]: endpoints, routes to receivers in other processes, declarations.
///
/// A command sent here is received by the endpoint that handles it, or routed with
/// [`BusBuilder::route`] to a queue consumed in another process:
///
/// ```
/// use std::sync::Arc;
/// use serde::{Deserialize, Serialize};
/// use tidings_core::transport::memory::MemoryTransport;
/// use tidings_core::{Bus, Message};
///
/// #[derive(Serialize, Deserialize, Message)]
/// #[message(name = "mail.send-receipt", kind = "command")]
/// struct SendReceipt { order_id: u32 }
///
/// let builder = Bus::builder(Arc::new(MemoryTransport::new()))
///     .name("shop")
///     .sends::<SendReceipt>()
///     .route::<SendReceipt>("mailer");
/// let report = builder.validate()?;
/// assert_eq!(report.routes.get("mail.send-receipt").map(String::as_str), Some("mailer"));
/// # Ok::<(), tidings_core::Error>(())
/// ```
pub struct BusBuilder {
    transport: Arc<dyn Transport>,
    name: String,
    endpoints: Vec<Endpoint>,
    routes: BTreeMap<String, String>,
    app_sends: BTreeSet<ContractUse>,
    observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for BusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusBuilder")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl BusBuilder {
    /// A bus on `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        BusBuilder {
            transport,
            name: "app".into(),
            endpoints: Vec::new(),
            routes: BTreeMap::new(),
            app_sends: BTreeSet::new(),
            observer: None,
        }
    }

    /// The application's name (source of messages sent outside handlers; reply queue prefix).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds an endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Routes command `C` to `queue`, received by an endpoint in another process.
    pub fn route<C: Command>(mut self, queue: impl Into<String>) -> Self {
        self.routes.insert(C::NAME.to_string(), queue.into());
        self
    }

    /// Declares that the application sends or publishes `M` (validated at start-up).
    pub fn sends<M: Message>(mut self) -> Self {
        self.app_sends.insert(ContractUse::of::<M>());
        self
    }

    /// Installs an observer told how each delivery ended.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Validates the topology without starting anything.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use serde::{Deserialize, Serialize};
    /// use tidings_core::transport::memory::MemoryTransport;
    /// use tidings_core::{Bus, Error, ErrorKind, Message};
    ///
    /// #[derive(Serialize, Deserialize, Message)]
    /// #[message(name = "shop.reserve-stock", kind = "command")]
    /// struct ReserveStock { order_id: u32 }
    ///
    /// // Sent, but nothing receives it and no route names a queue: refused before start.
    /// let builder = Bus::builder(Arc::new(MemoryTransport::new())).sends::<ReserveStock>();
    /// let err = builder.validate().unwrap_err();
    /// assert!(matches!(err, Error::Config(_)));
    /// assert_eq!(err.kind(), ErrorKind::Permanent);
    /// assert!(err.to_string().contains("no endpoint receives it"));
    /// ```
    pub fn validate(&self) -> Result<TopologyReport> {
        topology::validate(&self.endpoints, &self.routes, &self.app_sends)
    }

    /// Validates, declares the topology on the transport, and starts every endpoint.
    pub async fn start(self) -> Result<Bus> {
        let report = self.validate()?;
        for w in &report.warnings {
            tracing::warn!("topology: {w}");
        }
        self.transport.declare(&report.topology).await?;
        let routes: HashMap<String, String> = report.routes.clone().into_iter().collect();
        let producer = Producer::new(self.transport.clone(), routes, Some(self.name.clone()));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let loops = TaskTracker::new();
        for ep in &self.endpoints {
            let options = ReceiveOptions {
                prefetch: ep.settings.prefetch,
                lease: ep.settings.lease,
                ordered: ep.settings.ordered,
                park_on_dead_letter: ep.settings.park_on_dead_letter,
            };
            let receiver = self.transport.receive(&ep.name, options).await?;
            let rt = EndpointRuntime {
                name: ep.name.as_str().into(),
                settings: ep.settings.clone(),
                producer: producer.with_source(ep.name.clone()),
                observer: self.observer.clone(),
                inbox: ep.inbox.clone(),
            };
            loops.spawn(receive::run(
                rt,
                ep.build_pipeline(),
                receiver,
                stop.clone(),
                tracker.clone(),
            ));
        }
        tracing::info!(
            endpoints = self.endpoints.len(),
            transport = self.transport.name(),
            "bus started"
        );
        Ok(Bus {
            inner: Arc::new(Inner {
                name: self.name,
                transport: self.transport,
                producer,
                report,
                stop,
                tracker,
                loops,
                replies: OnceCell::new(),
                pending: Arc::new(Mutex::new(HashMap::new())),
            }),
        })
    }
}

type Pending = Arc<Mutex<HashMap<Uuid, oneshot::Sender<Envelope>>>>;

struct Inner {
    name: String,
    transport: Arc<dyn Transport>,
    producer: Producer,
    report: TopologyReport,
    stop: CancellationToken,
    tracker: TaskTracker,
    loops: TaskTracker,
    replies: OnceCell<String>,
    pending: Pending,
}

/// A running bus. Cheap to clone.
///
/// Sending a command to the endpoint that handles it, on the in-memory transport:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use tidings_core::transport::memory::MemoryTransport;
/// use tidings_core::{Bus, ConsumeContext, Endpoint, Message};
///
/// #[derive(Serialize, Deserialize, Message)]
/// #[message(name = "shop.reserve-stock", kind = "command")]
/// struct ReserveStock { order_id: u32, quantity: u32 }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let (tx, mut reserved) = tokio::sync::mpsc::unbounded_channel();
/// let inventory = Endpoint::new("inventory").handle_fn(move |c: ReserveStock, ctx: ConsumeContext| {
///     let tx = tx.clone();
///     async move {
///         let _ = tx.send((c.order_id, c.quantity, ctx.endpoint().to_string()));
///         Ok(())
///     }
/// });
/// let bus = Bus::builder(Arc::new(MemoryTransport::new()))
///     .endpoint(inventory)
///     .sends::<ReserveStock>()
///     .start()
///     .await?;
/// bus.send(&ReserveStock { order_id: 1, quantity: 3 }).await?;
/// let got = tokio::time::timeout(Duration::from_secs(5), reserved.recv()).await?;
/// assert_eq!(got, Some((1, 3, "inventory".to_string())));
/// assert!(bus.shutdown(Duration::from_secs(5)).await);
/// // A stopped bus refuses to send.
/// assert!(bus.send(&ReserveStock { order_id: 2, quantity: 1 }).await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Starts building a bus on `transport`.
    pub fn builder(transport: Arc<dyn Transport>) -> BusBuilder {
        BusBuilder::new(transport)
    }

    /// The producer (routes commands; source = the application's name).
    pub fn producer(&self) -> &Producer {
        &self.inner.producer
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The validated topology.
    pub fn topology(&self) -> &TopologyReport {
        &self.inner.report
    }

    /// Publishes an event to every subscribed endpoint.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Uuid> {
        self.check_running()?;
        self.inner.producer.publish(event).await
    }

    /// Publishes with options (correlation id, partition key, headers, expiry ...).
    pub async fn publish_with<E: Event>(&self, event: &E, opts: SendOptions) -> Result<Uuid> {
        self.check_running()?;
        self.inner.producer.publish_with(event, opts).await
    }

    /// Sends a command to the one endpoint that receives it.
    pub async fn send<C: Command>(&self, cmd: &C) -> Result<Uuid> {
        self.check_running()?;
        self.inner.producer.send(cmd).await
    }

    /// Sends with options.
    pub async fn send_with<C: Command>(&self, cmd: &C, opts: SendOptions) -> Result<Uuid> {
        self.check_running()?;
        self.inner.producer.send_with(cmd, opts).await
    }

    /// Delivers `msg` (event or command) at `at`.
    pub async fn schedule<M: Message>(&self, msg: &M, at: DateTime<Utc>) -> Result<Uuid> {
        self.check_running()?;
        self.inner.producer.schedule(msg, at).await
    }

    /// Delivers `msg` after `delay`.
    pub async fn send_delayed<M: Message>(&self, msg: &M, delay: Duration) -> Result<Uuid> {
        self.check_running()?;
        self.inner
            .producer
            .dispatch(msg, SendOptions::default().delay(delay))
            .await
    }

    /// Sends request `req` and waits up to `timeout` for the handler's `ctx.respond(..)`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use serde::{Deserialize, Serialize};
    /// use tidings_core::transport::memory::MemoryTransport;
    /// use tidings_core::{Bus, ConsumeContext, Endpoint, Message};
    ///
    /// #[derive(Serialize, Deserialize, Message)]
    /// #[message(name = "stock.get-level", kind = "command")]
    /// struct GetLevel { sku: String }
    /// #[derive(Serialize, Deserialize, Message)]
    /// #[message(name = "stock.level", kind = "command")]
    /// struct Level { sku: String, on_hand: u32 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// let stock = Endpoint::new("stock").handle_fn(|q: GetLevel, ctx: ConsumeContext| async move {
    ///     ctx.respond(&Level { on_hand: q.sku.len() as u32, sku: q.sku }).await?;
    ///     Ok(())
    /// });
    /// let bus = Bus::builder(Arc::new(MemoryTransport::new()))
    ///     .endpoint(stock)
    ///     .sends::<GetLevel>()
    ///     .start()
    ///     .await?;
    /// let level: Level = bus
    ///     .request(&GetLevel { sku: "ab-12".into() }, Duration::from_secs(5))
    ///     .await?;
    /// assert_eq!((level.sku.as_str(), level.on_hand), ("ab-12", 5));
    /// bus.shutdown(Duration::from_secs(5)).await;
    /// # Ok(()) }
    /// ```
    pub async fn request<Req: Message, Resp: Message>(
        &self,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        self.check_running()?;
        let reply_queue = self.reply_queue().await?;
        let producer = &self.inner.producer;
        let destination = match Req::KIND {
            MessageKind::Event => Destination::Topic,
            MessageKind::Command => Destination::Queue(producer.route(Req::NAME)?.to_string()),
        };
        let (out, span) = producer.prepare(
            Req::KIND,
            req,
            SendOptions::default().header(headers::REPLY_TO, reply_queue.clone()),
            destination,
        )?;
        let id = out.envelope.id;
        let (tx, rx) = oneshot::channel();
        // Registered before sending: the response may come back before `ship` returns.
        lock(&self.inner.pending).insert(id, tx);
        if let Err(e) = producer.ship(out, span).await {
            lock(&self.inner.pending).remove(&id);
            return Err(e);
        }
        let env = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(env)) => env,
            Ok(Err(_)) => return Err(Error::Shutdown),
            Err(_) => {
                lock(&self.inner.pending).remove(&id);
                return Err(Error::RequestTimeout {
                    message_type: Req::NAME.to_string(),
                    timeout,
                });
            }
        };
        if env.message_type != Resp::NAME {
            return Err(Error::Serialization(format!(
                "expected a {} response, got {}",
                Resp::NAME,
                env.message_type
            )));
        }
        JsonSerializer.decode(&env.body)
    }

    async fn reply_queue(&self) -> Result<String> {
        let inner = &self.inner;
        inner
            .replies
            .get_or_try_init(|| async {
                let id = Uuid::new_v4().simple().to_string();
                let queue = format!("{}.replies.{}", inner.name, &id[..12]);
                let spec = QueueSpec {
                    name: queue.clone(),
                    temporary: true,
                    ..QueueSpec::default()
                };
                inner
                    .transport
                    .declare(&Topology { queues: vec![spec] })
                    .await?;
                let mut rx = inner
                    .transport
                    .receive(&queue, ReceiveOptions::default())
                    .await?;
                let pending = inner.pending.clone();
                let stop = inner.stop.clone();
                inner.loops.spawn(async move {
                    loop {
                        let d =
                            tokio::select! { _ = stop.cancelled() => break, d = rx.recv() => d };
                        let Ok(Some(d)) = d else { break };
                        let to = d
                            .envelope
                            .header(headers::IN_REPLY_TO)
                            .and_then(|s| s.parse::<Uuid>().ok());
                        if let Some(tx) = to.and_then(|id| lock(&pending).remove(&id)) {
                            let _ = tx.send(d.envelope.clone());
                        }
                        if let Err(e) = d.ack().await {
                            tracing::warn!(error = %e, "acking a reply failed");
                        }
                    }
                    let _ = rx.close().await;
                });
                Ok::<_, Error>(queue)
            })
            .await
            .cloned()
    }

    /// Sends already-built messages (atomically where the transport can).
    pub async fn send_raw(&self, messages: Vec<Outgoing>) -> Result<()> {
        self.check_running()?;
        self.inner.producer.send_raw(messages).await
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.stop.is_cancelled() {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Graceful shutdown: stop taking deliveries, let in-flight handlers finish until
    /// `deadline`, then abandon the rest (their leases expire and they are redelivered).
    /// The bus's reply queue (made by its first [`Bus::request`]) is deleted.
    /// Returns whether everything finished in time.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.loops.close();
        inner.tracker.close();
        let done = tokio::time::timeout(deadline, async {
            inner.loops.wait().await;
            inner.tracker.wait().await;
        })
        .await
        .is_ok();
        if !done {
            tracing::warn!(
                ?deadline,
                "shutdown deadline passed with handlers still running"
            );
        }
        // The reply queue belongs to this bus instance alone: remove it.
        if let Some(queue) = inner.replies.get() {
            if let Err(e) = inner.transport.delete_queue(queue).await {
                tracing::warn!(error = %e, queue, "deleting the reply queue failed");
            }
        }
        done
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
