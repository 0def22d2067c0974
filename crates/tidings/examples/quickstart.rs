//! Quickstart: one event, one command, a retry, and a message landing in the error queue.
//! Run: `cargo run -p tidings --example quickstart`
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::pipeline::retry::Intervals;
use tidings::transport::DeadLetterQuery;
use tidings::{Bus, ConsumeContext, Endpoint, HandlerError, Message, Redelivery};

#[derive(Debug, Serialize, Deserialize, Message)]
#[message(name = "shop.order-placed", version = 1, kind = "event")]
struct OrderPlaced {
    order_id: u32,
    quantity: u32,
}

#[derive(Debug, Serialize, Deserialize, Message)]
#[message(name = "shop.reserve-stock", version = 1, kind = "command")]
struct ReserveStock {
    order_id: u32,
    quantity: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let transport =
        tidings::connect(&format!("sqlite://{}/quickstart.db", dir.path().display())).await?;
    let orders = Endpoint::new("orders").sends::<ReserveStock>().handle_fn(
        |e: OrderPlaced, ctx: ConsumeContext| async move {
            println!("orders: {e:?} -> sending ReserveStock");
            ctx.send(&ReserveStock {
                order_id: e.order_id,
                quantity: e.quantity,
            })
            .await?;
            Ok(())
        },
    );
    let inventory = Endpoint::new("inventory")
        .retry(Intervals(vec![Duration::from_millis(100); 2]))
        .redelivery(Redelivery::none())
        .handle_fn(|c: ReserveStock, ctx: ConsumeContext| async move {
            println!("inventory: {c:?}, attempt {}", ctx.attempt());
            match (c.quantity, ctx.attempt()) {
                (0, _) => Err(HandlerError::permanent("quantity must be at least 1")),
                (_, 1) => Err(HandlerError::transient("warehouse busy")), // retried
                _ => Ok(()),
            }
        });
    let bus = Bus::builder(transport.clone())
        .endpoint(orders)
        .endpoint(inventory)
        .sends::<OrderPlaced>()
        .start()
        .await?;
    bus.publish(&OrderPlaced {
        order_id: 1,
        quantity: 2,
    })
    .await?;
    bus.publish(&OrderPlaced {
        order_id: 2,
        quantity: 0,
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for dl in transport.dead_letters(&DeadLetterQuery::default()).await? {
        let reason = dl.envelope.header("tidings-fault-error").unwrap_or("?");
        println!(
            "error queue of {}: {} ({reason})",
            dl.queue,
            String::from_utf8_lossy(&dl.envelope.body)
        );
    }
    bus.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
