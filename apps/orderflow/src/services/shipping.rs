//! Shipping: creates a shipment for a paid order, or refuses destinations it does not
//! serve (`ShipmentFailed`, which makes the saga compensate: release stock, refund).

use tidings_core::{ConsumeContext, Endpoint, HandlerError};
use tracing::Instrument;

use crate::args;
use crate::contracts::{CreateShipment, ShipmentCreated, ShipmentFailed};
use crate::db::{Db, Work};

/// The endpoint's queue name.
pub const QUEUE: &str = "shipping";

/// Countries shipping does not serve.
pub const UNSERVED: &[&str] = &["AQ"];

/// The shipping endpoint.
pub fn endpoint(db: Db) -> Endpoint {
    Endpoint::new(QUEUE)
        .handle_fn(move |m: CreateShipment, ctx: ConsumeContext| {
            let db = db.clone();
            let span = super::span(&ctx, m.order_id);
            async move { create(&db, m, &ctx).await }.instrument(span)
        })
        .sends::<ShipmentCreated>()
        .sends::<ShipmentFailed>()
}

async fn create(db: &Db, m: CreateShipment, ctx: &ConsumeContext) -> Result<(), HandlerError> {
    db.work(ctx, move |work| Box::pin(create_in(work, m)))
        .await?;
    Ok(())
}

async fn create_in(work: &mut Work<'_>, m: CreateShipment) -> Result<(), HandlerError> {
    if UNSERVED.contains(&m.ship_to.as_str()) {
        return work.emit(&ShipmentFailed {
            order_id: m.order_id,
            reason: format!("undeliverable: we do not ship to {}", m.ship_to),
        });
    }
    let tracking = format!("TRK-{}", &m.order_id.simple().to_string()[..16]);
    work.exec(
        "INSERT INTO ship_shipments (order_id, tracking, ship_to) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        args![m.order_id.to_string(), &tracking, &m.ship_to],
    )
    .await?;
    work.emit(&ShipmentCreated {
        order_id: m.order_id,
        tracking,
    })
}
