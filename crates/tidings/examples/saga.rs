//! Sagas: an order saga on the embedded SQLite transport — a typed state, a start message,
//! a payment timeout, a compensation run when the payment times out, and an operator query.
//! Run: `cargo run -p tidings --example saga`
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::saga::{Completion, Saga, SagaQueries, SagaQuery, SagaState};
use tidings::sqlite::{SqliteConfig, SqliteSagaStore, SqliteTransport};
use tidings::{Bus, Endpoint, Message};

#[derive(Debug, Serialize, Deserialize, Message)]
#[message(name = "shop.order-placed", version = 1, kind = "event")]
struct OrderPlaced {
    order: u32,
}
#[derive(Debug, Serialize, Deserialize, Message)]
#[message(name = "shop.payment-captured", version = 1, kind = "event")]
struct PaymentCaptured {
    order: u32,
}
#[derive(Debug, Serialize, Deserialize, Message)]
#[message(name = "shop.reserve-stock", version = 1, kind = "command")]
struct ReserveStock {
    order: u32,
}
#[derive(Debug, Serialize, Deserialize, Message)]
#[message(name = "shop.release-stock", version = 1, kind = "command")]
struct ReleaseStock {
    order: u32,
}
#[derive(Debug, Serialize, Deserialize, Message)]
#[message(name = "shop.payment-timeout", version = 1, kind = "command")]
struct PaymentTimeout {
    order: u32,
}

/// The saga's state: a typed enum.
#[derive(Debug, Serialize, Deserialize)]
enum Order {
    Paying,
    Paid,
    Cancelled,
}

impl SagaState for Order {
    fn name(&self) -> &str {
        match self {
            Order::Paying => "paying",
            Order::Paid => "paid",
            Order::Cancelled => "cancelled",
        }
    }
}

fn order_saga() -> Saga<Order> {
    Saga::<Order>::new("order")
        .completion(Completion::KeepFor(Duration::from_secs(3600)))
        // OrderPlaced starts a saga, found by its order number.
        .starts_with(
            |m: &OrderPlaced| m.order,
            |m, step| {
                step.send(&ReserveStock { order: m.order })?;
                step.compensate_with(&ReleaseStock { order: m.order })?; // the undo
                step.request_timeout(&PaymentTimeout { order: m.order }, Duration::from_secs(1))?;
                Ok(Order::Paying)
            },
        )
        .on(
            |m: &PaymentCaptured| m.order,
            |state, _, step| match state {
                Order::Paying => {
                    step.complete(); // the armed timeout is dropped when it arrives
                    Ok(Order::Paid)
                }
                other => Ok(other),
            },
        )
        .on(
            |m: &PaymentTimeout| m.order,
            |state, _, step| match state {
                Order::Paying => {
                    step.fail("payment-timeout")?; // sends ReleaseStock
                    step.complete();
                    Ok(Order::Cancelled)
                }
                other => Ok(other),
            },
        )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let transport = SqliteTransport::connect(SqliteConfig::new(dir.path().join("saga.db"))).await?;
    // Each step is one job of the transport's writer: inbox row + state + messages.
    let store = Arc::new(SqliteSagaStore::on_transport(&transport).await?);
    let saga = order_saga().attach(
        Endpoint::new("order-saga")
            .ordered(true)
            .sends::<ReserveStock>()
            .sends::<ReleaseStock>()
            .sends::<PaymentTimeout>(),
        store.clone(),
    );
    let inventory = Endpoint::new("inventory")
        .handle_fn(|c: ReserveStock, _| async move {
            println!("inventory: reserve stock for order {}", c.order);
            Ok(())
        })
        .handle_fn(|c: ReleaseStock, _| async move {
            println!(
                "inventory: release stock of order {} (compensation)",
                c.order
            );
            Ok(())
        });
    let bus = Bus::builder(Arc::new(transport))
        .endpoint(saga)
        .endpoint(inventory)
        .sends::<OrderPlaced>()
        .sends::<PaymentCaptured>()
        .start()
        .await?;

    bus.publish(&OrderPlaced { order: 1 }).await?;
    bus.publish(&OrderPlaced { order: 2 }).await?;
    bus.publish(&PaymentCaptured { order: 1 }).await?; // order 2 is never paid
    tokio::time::sleep(Duration::from_millis(1800)).await;

    for s in store.list(&SagaQuery::default()).await? {
        println!(
            "saga {} {}: {} ({:?}, version {})",
            s.saga, s.key, s.state, s.status, s.version
        );
    }
    bus.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
