//! Sagas on the test harness (memory transport, paused tokio time): start and correlate,
//! the missing-instance policies, timeouts (fired and stale), compensation order, a
//! duplicate delivery, a conflict re-run, a failing step, completion and retention.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tidings_core::saga::{
    Completion, Decide, MemorySagaStore, Missing, Saga, SagaQueries, SagaQuery, SagaState,
    SagaStatus, SagaStore, StepOutcome,
};
use tidings_core::transport::{Outgoing, Transport};
use tidings_core::{ConsumeContext, Endpoint, HandlerError, Message, SendOptions, TestHarness};

macro_rules! contract {
    ($name:ident, $wire:literal, $kind:literal) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
        #[message(name = $wire, version = 1, kind = $kind)]
        struct $name {
            order: u32,
        }
    };
}
contract!(OrderPlaced, "t.order-placed", "event");
contract!(StockReserved, "t.stock-reserved", "event");
contract!(PaymentCaptured, "t.payment-captured", "event");
contract!(ShipmentFailed, "t.shipment-failed", "event");
contract!(Shipped, "t.shipped", "event");
contract!(Poison, "t.poison", "event");
contract!(Stray, "t.stray", "event");
contract!(PaymentTimeout, "t.payment-timeout", "command");
contract!(CapturePayment, "t.capture-payment", "command");
contract!(ReleaseStock, "t.release-stock", "command");
contract!(RefundPayment, "t.refund-payment", "command");
contract!(OrderCompleted, "t.order-completed", "event");
contract!(OrderCancelled, "t.order-cancelled", "event");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Order {
    Reserving,
    Paying,
    Shipping,
    Completed,
    Cancelled { reason: String },
}

impl SagaState for Order {
    fn name(&self) -> &str {
        match self {
            Order::Reserving => "reserving",
            Order::Paying => "paying",
            Order::Shipping => "shipping",
            Order::Completed => "completed",
            Order::Cancelled { .. } => "cancelled",
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn cancel(
    step: &mut tidings_core::saga::Step<'_>,
    order: u32,
    reason: &str,
) -> Result<Order, HandlerError> {
    step.fail(reason)?;
    step.publish(&OrderCancelled { order })?;
    step.complete();
    Ok(Order::Cancelled {
        reason: reason.into(),
    })
}

fn order_saga(completion: Completion) -> Saga<Order> {
    Saga::<Order>::new("order")
        .completion(completion)
        .starts_with(|m: &OrderPlaced| m.order, |_, _| Ok(Order::Reserving))
        .on(
            |m: &StockReserved| m.order,
            |s, m, step| match s {
                Order::Reserving => {
                    step.compensate_with(&ReleaseStock { order: m.order })?;
                    step.send(&CapturePayment { order: m.order })?;
                    step.request_timeout(&PaymentTimeout { order: m.order }, TIMEOUT)?;
                    Ok(Order::Paying)
                }
                s => Ok(s),
            },
        )
        .on(
            |m: &PaymentCaptured| m.order,
            |s, m, step| match s {
                Order::Paying => {
                    step.compensate_with(&RefundPayment { order: m.order })?;
                    Ok(Order::Shipping)
                }
                // A capture after the order was cancelled: give the money back.
                s @ Order::Cancelled { .. } => {
                    step.send(&RefundPayment { order: m.order })?;
                    Ok(s)
                }
                s => Ok(s),
            },
        )
        .when_missing(Missing::Ignore)
        .on(
            |m: &PaymentTimeout| m.order,
            |s, m, step| match s {
                Order::Paying => {
                    step.send(&RefundPayment { order: m.order })?;
                    cancel(step, m.order, "payment-timeout")
                }
                s => Ok(s),
            },
        )
        .on(
            |m: &ShipmentFailed| m.order,
            |s, m, step| match s {
                Order::Shipping => cancel(step, m.order, "undeliverable"),
                s => Ok(s),
            },
        )
        .on(
            |m: &Shipped| m.order,
            |s, m, step| match s {
                Order::Shipping => {
                    step.clear_compensations();
                    step.publish(&OrderCompleted { order: m.order })?;
                    step.complete();
                    Ok(Order::Completed)
                }
                s => Ok(s),
            },
        )
        .on(
            |m: &Poison| m.order,
            |_, _, _| Err(HandlerError::permanent("poison")),
        )
        .on(|m: &Stray| m.order, |s, _, _| Ok(s))
}

async fn harness(store: Arc<dyn SagaStore>, completion: Completion) -> TestHarness {
    let saga = Endpoint::new("order-saga")
        .ordered(true)
        .sends::<CapturePayment>()
        .sends::<ReleaseStock>()
        .sends::<RefundPayment>()
        .sends::<OrderCompleted>()
        .sends::<OrderCancelled>()
        .sends::<PaymentTimeout>();
    let other = Endpoint::new("others")
        .handle_fn(|_: CapturePayment, _| async { Ok(()) })
        .handle_fn(|_: ReleaseStock, _| async { Ok(()) })
        .handle_fn(|_: RefundPayment, _| async { Ok(()) });
    TestHarness::start(|b| {
        b.endpoint(order_saga(completion).attach(saga, store))
            .endpoint(other)
            .sends::<OrderPlaced>()
            .sends::<StockReserved>()
            .sends::<PaymentCaptured>()
            .sends::<ShipmentFailed>()
            .sends::<Shipped>()
            .sends::<Poison>()
            .sends::<Stray>()
    })
    .await
    .expect("harness starts")
}

async fn settled(h: &TestHarness, message_type: &str, n: usize) {
    let ok = h
        .wait_until(Duration::from_secs(300), |h| {
            h.observed()
                .iter()
                .filter(|o| o.envelope.message_type == message_type)
                .count()
                >= n
        })
        .await;
    assert!(ok, "{n} deliveries of {message_type} settled");
}

async fn state(store: &MemorySagaStore, order: u32) -> Option<(String, Order, SagaStatus)> {
    store
        .show("order", &order.to_string())
        .await
        .unwrap()
        .map(|r| (r.state, serde_json::from_value(r.data).unwrap(), r.status))
}

#[tokio::test(start_paused = true)]
async fn a_saga_starts_and_follows_its_messages_to_completion() {
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Keep).await;
    h.bus.publish(&OrderPlaced { order: 1 }).await.unwrap();
    settled(&h, "t.order-placed", 1).await;
    assert_eq!(state(&store, 1).await.unwrap().0, "reserving");
    h.bus.publish(&StockReserved { order: 1 }).await.unwrap();
    h.bus.publish(&PaymentCaptured { order: 1 }).await.unwrap();
    h.bus.publish(&Shipped { order: 1 }).await.unwrap();
    settled(&h, "t.shipped", 1).await;
    assert_eq!(
        h.published::<OrderCompleted>(),
        vec![OrderCompleted { order: 1 }]
    );
    assert_eq!(
        h.sent::<CapturePayment>(),
        vec![CapturePayment { order: 1 }]
    );
    let (name, s, status) = state(&store, 1).await.unwrap();
    assert_eq!(
        (name.as_str(), s, status),
        ("completed", Order::Completed, SagaStatus::Completed)
    );
    // A second start of the same order does not restart it.
    h.bus.publish(&OrderPlaced { order: 1 }).await.unwrap();
    settled(&h, "t.order-placed", 2).await;
    assert_eq!(state(&store, 1).await.unwrap().1, Order::Completed);
    // Messages carry the saga's correlation.
    let env = &h.envelopes::<CapturePayment>()[0];
    assert_eq!(env.header("tidings-saga"), Some("order/1"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn missing_saga_is_ignored_or_dead_lettered_per_message() {
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Keep).await;
    h.bus.publish(&PaymentCaptured { order: 9 }).await.unwrap(); // Missing::Ignore
    h.bus.publish(&Stray { order: 9 }).await.unwrap(); // Missing::Error (default)
    settled(&h, "t.payment-captured", 1).await;
    settled(&h, "t.stray", 1).await;
    assert_eq!(h.consumed("t.payment-captured").len(), 1);
    let faulted = h.faulted("t.stray");
    assert_eq!(faulted.len(), 1);
    let dl = h.dead_letters().await.unwrap();
    assert!(
        dl[0]
            .envelope
            .header("tidings-fault-error")
            .unwrap_or("")
            .contains("no saga `order` with key `9`"),
        "{:?}",
        dl[0].envelope.headers
    );
    assert!(state(&store, 9).await.is_none());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn payment_timeout_fires_in_virtual_time_and_runs_compensations() {
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Keep).await;
    h.bus.publish(&OrderPlaced { order: 2 }).await.unwrap();
    h.bus.publish(&StockReserved { order: 2 }).await.unwrap();
    settled(&h, "t.stock-reserved", 1).await;
    let before = tokio::time::Instant::now();
    settled(&h, "t.payment-timeout", 1).await;
    assert!(
        before.elapsed() >= TIMEOUT - Duration::from_secs(1),
        "not before it is due"
    );
    assert_eq!(
        h.published::<OrderCancelled>(),
        vec![OrderCancelled { order: 2 }]
    );
    assert_eq!(h.sent::<ReleaseStock>(), vec![ReleaseStock { order: 2 }]);
    assert_eq!(h.sent::<RefundPayment>(), vec![RefundPayment { order: 2 }]);
    let (_, s, _) = state(&store, 2).await.unwrap();
    assert_eq!(
        s,
        Order::Cancelled {
            reason: "payment-timeout".into()
        }
    );
    let rec = store.show("order", "2").await.unwrap().unwrap();
    assert!(rec.compensations.is_empty() && rec.timeouts.is_empty());
    // The compensation says why it was sent.
    let env = &h.envelopes::<ReleaseStock>()[0];
    assert_eq!(env.header("tidings-saga-failure"), Some("payment-timeout"));

    // A capture that lands after the cancellation is refunded.
    h.bus.publish(&PaymentCaptured { order: 2 }).await.unwrap();
    settled(&h, "t.payment-captured", 1).await;
    assert_eq!(h.sent::<RefundPayment>().len(), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_timeout_that_arrives_after_the_saga_moved_on_does_nothing() {
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Keep).await;
    h.bus.publish(&OrderPlaced { order: 3 }).await.unwrap();
    h.bus.publish(&StockReserved { order: 3 }).await.unwrap();
    h.bus.publish(&PaymentCaptured { order: 3 }).await.unwrap();
    settled(&h, "t.payment-captured", 1).await;
    let version = store.show("order", "3").await.unwrap().unwrap().version;
    settled(&h, "t.payment-timeout", 1).await; // fires 30 s (virtual) later
    assert_eq!(h.consumed("t.payment-timeout").len(), 1);
    assert!(h.published::<OrderCancelled>().is_empty());
    assert!(h.sent::<ReleaseStock>().is_empty());
    let rec = store.show("order", "3").await.unwrap().unwrap();
    assert_eq!(
        (rec.state.as_str(), rec.version),
        ("shipping", version),
        "no write at all"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failure_sends_the_recorded_compensations_newest_first() {
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Keep).await;
    for m in [1u32] {
        h.bus.publish(&OrderPlaced { order: m }).await.unwrap();
        h.bus.publish(&StockReserved { order: m }).await.unwrap();
        h.bus.publish(&PaymentCaptured { order: m }).await.unwrap();
        h.bus.publish(&ShipmentFailed { order: m }).await.unwrap();
    }
    settled(&h, "t.shipment-failed", 1).await;
    let undo: Vec<String> = h
        .outgoing()
        .into_iter()
        .map(|o| o.envelope.message_type)
        .filter(|t| t == "t.refund-payment" || t == "t.release-stock")
        .collect();
    assert_eq!(undo, ["t.refund-payment", "t.release-stock"]);
    // A second failure has nothing left to undo.
    h.bus.publish(&ShipmentFailed { order: 1 }).await.unwrap();
    settled(&h, "t.shipment-failed", 2).await;
    assert_eq!(
        h.sent::<RefundPayment>().len() + h.sent::<ReleaseStock>().len(),
        2
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_delivery_has_no_effect() {
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Keep).await;
    h.bus.publish(&OrderPlaced { order: 4 }).await.unwrap();
    settled(&h, "t.order-placed", 1).await;
    // The same envelope (same id) delivered twice, as a broker may.
    let out = h
        .bus
        .producer()
        .outgoing(&StockReserved { order: 4 }, SendOptions::default())
        .unwrap();
    let twice: Vec<Outgoing> = vec![out.clone(), out];
    h.transport.send(twice).await.unwrap();
    settled(&h, "t.stock-reserved", 2).await;
    assert_eq!(h.consumed("t.stock-reserved").len(), 2);
    assert_eq!(h.sent::<CapturePayment>().len(), 1, "one step, one capture");
    assert_eq!(store.show("order", "4").await.unwrap().unwrap().version, 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_writes_and_sends_nothing() {
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Keep).await;
    h.bus.publish(&OrderPlaced { order: 5 }).await.unwrap();
    settled(&h, "t.order-placed", 1).await;
    let before = store.show("order", "5").await.unwrap().unwrap();
    let sent = h.outgoing().len();
    h.bus.publish(&Poison { order: 5 }).await.unwrap();
    settled(&h, "t.poison", 1).await;
    assert_eq!(h.faulted("t.poison").len(), 1);
    assert_eq!(store.show("order", "5").await.unwrap().unwrap(), before);
    assert_eq!(
        h.outgoing().len(),
        sent + 1,
        "only the poison message itself"
    );
    h.stop().await;
}

/// Another writer saves the saga between the second step's load and its save (the step
/// read a version that is no longer current), once.
struct Racing {
    inner: MemorySagaStore,
    calls: AtomicU32,
}

#[async_trait]
impl SagaStore for Racing {
    async fn step(
        &self,
        saga: &str,
        key: &str,
        ctx: &ConsumeContext,
        decide: Decide,
    ) -> Result<StepOutcome, HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let decide: Decide = if call == 1 {
            Box::new(move |found| {
                decide(found.map(|mut r| {
                    r.version -= 1;
                    r
                }))
            })
        } else {
            decide
        };
        self.inner.step(saga, key, ctx, decide).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_conflict_reruns_the_step_on_fresh_state() {
    let inner = MemorySagaStore::new();
    let racing = Arc::new(Racing {
        inner: inner.clone(),
        calls: AtomicU32::new(0),
    });
    let h = harness(racing.clone(), Completion::Keep).await;
    h.bus.publish(&OrderPlaced { order: 6 }).await.unwrap();
    settled(&h, "t.order-placed", 1).await;
    h.bus.publish(&StockReserved { order: 6 }).await.unwrap();
    settled(&h, "t.stock-reserved", 1).await;
    assert_eq!(h.consumed("t.stock-reserved").len(), 1);
    assert_eq!(h.sent::<CapturePayment>().len(), 1);
    assert_eq!(state(&inner, 6).await.unwrap().0, "paying");
    assert_eq!(
        racing.calls.load(Ordering::SeqCst),
        3,
        "start, conflicted step, re-run"
    );
    assert_eq!(inner.show("order", "6").await.unwrap().unwrap().version, 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn completed_sagas_are_removed_or_kept_for_their_window() {
    // Removed: a later message finds no saga (PaymentCaptured: ignored).
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Remove).await;
    h.bus.publish(&OrderPlaced { order: 7 }).await.unwrap();
    h.bus.publish(&StockReserved { order: 7 }).await.unwrap();
    settled(&h, "t.payment-timeout", 1).await;
    assert!(state(&store, 7).await.is_none(), "removed when cancelled");
    h.bus.publish(&PaymentCaptured { order: 7 }).await.unwrap();
    settled(&h, "t.payment-captured", 1).await;
    assert_eq!(
        h.sent::<RefundPayment>().len(),
        1,
        "only the timeout's refund"
    );
    h.stop().await;

    // Kept for a window that has passed: counts as missing.
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::KeepFor(Duration::ZERO)).await;
    h.bus.publish(&OrderPlaced { order: 8 }).await.unwrap();
    h.bus.publish(&StockReserved { order: 8 }).await.unwrap();
    settled(&h, "t.payment-timeout", 1).await;
    let rec = store.show("order", "8").await.unwrap().unwrap();
    assert_eq!(rec.status, SagaStatus::Completed);
    assert!(rec.completed_at.is_some());
    h.bus.publish(&Stray { order: 8 }).await.unwrap();
    settled(&h, "t.stray", 1).await;
    assert_eq!(h.faulted("t.stray").len(), 1, "expired: no saga");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn operators_list_sagas_by_state_oldest_first() {
    let store = MemorySagaStore::new();
    let h = harness(Arc::new(store.clone()), Completion::Keep).await;
    for order in 10..13 {
        h.bus.publish(&OrderPlaced { order }).await.unwrap();
        settled(&h, "t.order-placed", (order - 9) as usize).await;
    }
    h.bus.publish(&StockReserved { order: 11 }).await.unwrap();
    settled(&h, "t.stock-reserved", 1).await;
    let reserving = store
        .list(&SagaQuery {
            state: Some("reserving".into()),
            ..SagaQuery::default()
        })
        .await
        .unwrap();
    let keys: Vec<&str> = reserving.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["10", "12"]);
    let page = store
        .list(&SagaQuery {
            offset: 1,
            limit: 1,
            ..SagaQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].key, "12");
    let paying = store
        .list(&SagaQuery {
            state: Some("paying".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (paying[0].pending_compensations, paying[0].armed_timeouts),
        (1, 1)
    );
    h.stop().await;
}
