//! The counters an operator watches count every message, also now that the handles are
//! registered once per message type (`metric_cache`): a recorder installed for this test
//! binary alone sees each send and each consume.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata};
use metrics::{Recorder, SharedString, Unit};
use tidings_core::{ConsumeContext, Endpoint, TestHarness};

mod common;
use common::*;

/// Counters and histogram sample counts by `name{labels}`.
#[derive(Default)]
struct Counting {
    values: Mutex<HashMap<String, Arc<Value>>>,
}

#[derive(Default)]
struct Value(AtomicU64);

impl CounterFn for Value {
    fn increment(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn absolute(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

impl HistogramFn for Value {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counting {
    fn value(&self, key: &Key) -> Arc<Value> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut values = self.values.lock().unwrap();
        values.entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        let values = self.values.lock().unwrap();
        values.get(name).map_or(0, |v| v.0.load(Ordering::Relaxed))
    }
}

struct Global(&'static Counting);

impl Recorder for Global {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.value(key))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.0.value(key))
    }
}

fn recorder() -> &'static Counting {
    static COUNTING: OnceLock<&'static Counting> = OnceLock::new();
    COUNTING.get_or_init(|| {
        let counting: &'static Counting = Box::leak(Box::default());
        metrics::set_global_recorder(Global(counting)).expect("the only recorder of this binary");
        counting
    })
}

#[tokio::test]
async fn every_send_and_consume_is_counted() {
    let counting = recorder();
    let h = TestHarness::start(|b| {
        b.endpoint(
            Endpoint::new("inventory")
                .handle_fn(|_: ReserveStock, _: ConsumeContext| async { Ok(()) }),
        )
        .endpoint(
            Endpoint::new("analytics")
                .handle_fn(|_: OrderPlaced, _: ConsumeContext| async { Ok(()) }),
        )
        .sends::<ReserveStock>()
        .sends::<OrderPlaced>()
    })
    .await
    .unwrap();
    for order_id in 0..25 {
        h.bus.send(&ReserveStock { order_id }).await.unwrap();
    }
    for order_id in 0..7 {
        let placed = OrderPlaced {
            order_id,
            total_cents: 1,
        };
        h.bus.publish(&placed).await.unwrap();
    }
    assert!(
        h.wait_until(WAIT, |h| h.consumed("test.reserve-stock").len() == 25
            && h.consumed("test.order-placed").len() == 7)
            .await
    );
    let sent = "tidings_messages_sent_total{message_type=test.reserve-stock}";
    assert_eq!(counting.get(sent), 25);
    let sent = "tidings_messages_sent_total{message_type=test.order-placed}";
    assert_eq!(counting.get(sent), 7);
    let consumed =
        "tidings_messages_consumed_total{endpoint=inventory,message_type=test.reserve-stock}";
    assert_eq!(counting.get(consumed), 25);
    let consumed =
        "tidings_messages_consumed_total{endpoint=analytics,message_type=test.order-placed}";
    assert_eq!(counting.get(consumed), 7);
    let timed =
        "tidings_handler_duration_seconds{endpoint=inventory,message_type=test.reserve-stock}";
    assert_eq!(
        counting.get(timed),
        25,
        "one handler-duration sample per message"
    );
}
