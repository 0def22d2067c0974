//! [`TestHarness`]: runs a bus on the in-memory transport and records what was sent,
//! published, consumed and faulted — like MassTransit's test harness. Use it under paused
//! tokio time (`#[tokio::test(start_paused = true)]`) and retry / redelivery schedules run
//! instantly — as do saga timeouts ([`Step::request_timeout`](crate::saga::Step::request_timeout)):
//! attach a saga with a [`MemorySagaStore`](crate::saga::MemorySagaStore) and its 30 s
//! timeout arrives as soon as everything else is idle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::bus::{Bus, BusBuilder};
use crate::observe::{Observation, Observer, Outcome};
use crate::transport::memory::MemoryTransport;
use crate::transport::{
    DeadLetter, DeadLetterQuery, Destination, Outgoing, QueueStats, ReceiveOptions, Receiver,
    Topology, Transport,
};
use crate::{Envelope, JsonSerializer, Message, Result, Serializer};

#[derive(Default)]
struct Records {
    outgoing: Vec<Outgoing>,
    observed: Vec<Observation>,
}

/// Shared record of traffic.
#[derive(Default, Clone)]
pub struct Recorder {
    records: Arc<Mutex<Records>>,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Observer for Recorder {
    fn observe(&self, observation: Observation) {
        self.lock().observed.push(observation);
    }
}

/// A transport decorator recording every outgoing message.
pub struct RecordingTransport {
    inner: Arc<dyn Transport>,
    recorder: Recorder,
}

#[async_trait]
impl Transport for RecordingTransport {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn max_message_size(&self) -> usize {
        self.inner.max_message_size()
    }
    async fn declare(&self, topology: &Topology) -> Result<()> {
        self.inner.declare(topology).await
    }
    async fn send(&self, messages: Vec<Outgoing>) -> Result<()> {
        let copy = messages.clone();
        self.inner.send(messages).await?;
        self.recorder.lock().outgoing.extend(copy);
        Ok(())
    }
    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Box<dyn Receiver>> {
        self.inner.receive(queue, options).await
    }
    async fn stats(&self) -> Result<Vec<QueueStats>> {
        self.inner.stats().await
    }
    async fn dead_letters(&self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(query).await
    }
    async fn replay(&self, query: &DeadLetterQuery, to: Option<&str>) -> Result<u64> {
        self.inner.replay(query, to).await
    }
    async fn purge(&self, query: &DeadLetterQuery) -> Result<u64> {
        self.inner.purge(query).await
    }
    async fn delete_queue(&self, queue: &str) -> Result<()> {
        self.inner.delete_queue(queue).await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

/// A bus on an in-memory transport, with a record of everything that happened.
///
/// ```
/// use std::time::Duration;
/// use serde::{Deserialize, Serialize};
/// use tidings_core::{ConsumeContext, Endpoint, HandlerError, Message, TestHarness};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
/// #[message(name = "shop.place-order", kind = "command")]
/// struct PlaceOrder { order_id: u32, quantity: u32 }
/// #[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
/// #[message(name = "shop.order-placed", kind = "event")]
/// struct OrderPlaced { order_id: u32 }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> anyhow::Result<()> {
/// let orders = Endpoint::new("orders").sends::<OrderPlaced>().handle_fn(
///     |c: PlaceOrder, ctx: ConsumeContext| async move {
///         if c.quantity == 0 {
///             return Err(HandlerError::permanent("quantity must be at least 1"));
///         }
///         ctx.publish(&OrderPlaced { order_id: c.order_id }).await?;
///         Ok(())
///     },
/// );
/// let h = TestHarness::start(|b| b.endpoint(orders).sends::<PlaceOrder>()).await?;
/// h.bus.send(&PlaceOrder { order_id: 1, quantity: 2 }).await?;
/// h.bus.send(&PlaceOrder { order_id: 2, quantity: 0 }).await?;
/// assert!(h.wait_until(Duration::from_secs(5), |h| h.observed().len() == 2).await);
///
/// assert_eq!(h.sent::<PlaceOrder>().len(), 2);
/// assert_eq!(h.published::<OrderPlaced>(), vec![OrderPlaced { order_id: 1 }]);
/// assert_eq!(h.consumed(PlaceOrder::NAME).len(), 1);
/// assert_eq!(h.faulted(PlaceOrder::NAME).len(), 1); // permanent: no retry, error queue
/// assert!(h.stop().await);
/// # Ok(()) }
/// ```
pub struct TestHarness {
    /// The running bus.
    pub bus: Bus,
    /// The in-memory transport under it.
    pub transport: MemoryTransport,
    recorder: Recorder,
}

impl std::fmt::Debug for TestHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHarness")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl TestHarness {
    /// Starts the bus `configure` builds, on a fresh in-memory transport.
    pub async fn start(configure: impl FnOnce(BusBuilder) -> BusBuilder) -> Result<Self> {
        let transport = MemoryTransport::new();
        let recorder = Recorder::default();
        let recording = Arc::new(RecordingTransport {
            inner: Arc::new(transport.clone()),
            recorder: recorder.clone(),
        });
        let bus = configure(BusBuilder::new(recording).name("harness"))
            .observer(Arc::new(recorder.clone()))
            .start()
            .await?;
        Ok(TestHarness {
            bus,
            transport,
            recorder,
        })
    }

    /// Every message sent or published so far.
    pub fn outgoing(&self) -> Vec<Outgoing> {
        self.recorder.lock().outgoing.clone()
    }

    /// Published messages of type `M`, decoded.
    pub fn published<M: Message>(&self) -> Vec<M> {
        self.decoded::<M>(|o| o.destination == Destination::Topic)
    }

    /// Sent (point-to-point) messages of type `M`, decoded.
    pub fn sent<M: Message>(&self) -> Vec<M> {
        self.decoded::<M>(|o| matches!(o.destination, Destination::Queue(_)))
    }

    /// Envelopes of type `M` sent or published.
    pub fn envelopes<M: Message>(&self) -> Vec<Envelope> {
        self.outgoing()
            .into_iter()
            .filter(|o| o.envelope.message_type == M::NAME)
            .map(|o| o.envelope)
            .collect()
    }

    fn decoded<M: Message>(&self, keep: impl Fn(&Outgoing) -> bool) -> Vec<M> {
        self.outgoing()
            .iter()
            .filter(|o| {
                o.envelope.message_type == M::NAME && o.envelope.version == M::VERSION && keep(o)
            })
            .filter_map(|o| JsonSerializer.decode(&o.envelope.body).ok())
            .collect()
    }

    /// Every settled delivery so far.
    pub fn observed(&self) -> Vec<Observation> {
        self.recorder.lock().observed.clone()
    }

    /// Deliveries of `message_type` that were consumed successfully.
    pub fn consumed(&self, message_type: &str) -> Vec<Observation> {
        self.filter(message_type, |o| matches!(o, Outcome::Consumed))
    }

    /// Deliveries of `message_type` that went to an error queue.
    pub fn faulted(&self, message_type: &str) -> Vec<Observation> {
        self.filter(message_type, |o| matches!(o, Outcome::DeadLettered { .. }))
    }

    fn filter(&self, message_type: &str, f: impl Fn(&Outcome) -> bool) -> Vec<Observation> {
        self.observed()
            .into_iter()
            .filter(|o| o.envelope.message_type == message_type && f(&o.outcome))
            .collect()
    }

    /// Dead letters in every error queue.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.transport
            .dead_letters(&DeadLetterQuery::default())
            .await
    }

    /// Waits (in tokio time) until `cond` holds, checking every 10 ms; false after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the bus.
    pub async fn stop(&self) -> bool {
        self.bus.shutdown(Duration::from_secs(10)).await
    }
}
