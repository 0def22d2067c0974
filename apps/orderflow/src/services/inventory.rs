//! Inventory: reserves stock for an order (all lines or none) and releases it again as a
//! compensation. Stock never goes negative: every decrement is a conditional UPDATE and the
//! column has a CHECK constraint.

use tidings_core::{ConsumeContext, Endpoint, HandlerError};
use tracing::Instrument;

use crate::args;
use crate::contracts::{ReleaseStock, ReserveStock, StockRejected, StockReleased, StockReserved};
use crate::db::{Db, Work};

/// The endpoint's queue name.
pub const QUEUE: &str = "inventory";

/// Seeds stock for `products` (id, units) unless already present.
pub async fn seed(db: &Db, products: &[(&str, i64)]) -> anyhow::Result<()> {
    let products: Vec<(String, i64)> = products.iter().map(|(p, u)| (p.to_string(), *u)).collect();
    db.write(move |tx| {
        Box::pin(async move {
            for (id, units) in products {
                tx.exec(
                    "INSERT INTO inv_stock (product_id, initial, available) VALUES (?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                    args![id, units, units],
                )
                .await?;
            }
            Ok::<_, anyhow::Error>(())
        })
    })
    .await
}

/// The inventory endpoint.
pub fn endpoint(db: Db) -> Endpoint {
    let d2 = db.clone();
    Endpoint::new(QUEUE)
        .handle_fn(move |m: ReserveStock, ctx: ConsumeContext| {
            let db = db.clone();
            let span = super::span(&ctx, m.order_id);
            async move { reserve(&db, m, &ctx).await }.instrument(span)
        })
        .handle_fn(move |m: ReleaseStock, ctx: ConsumeContext| {
            let db = d2.clone();
            let span = super::span(&ctx, m.order_id);
            async move { release(&db, m, &ctx).await }.instrument(span)
        })
        .sends::<StockReserved>()
        .sends::<StockRejected>()
        .sends::<StockReleased>()
}

async fn reserve(db: &Db, m: ReserveStock, ctx: &ConsumeContext) -> Result<(), HandlerError> {
    if m.lines.is_empty() || m.lines.iter().any(|l| l.quantity == 0) {
        return Err(HandlerError::permanent(format!(
            "order {}: every line needs a quantity of at least 1",
            m.order_id
        )));
    }
    db.work(ctx, move |work| Box::pin(reserve_in(work, m)))
        .await?;
    Ok(())
}

async fn reserve_in(work: &mut Work<'_>, m: ReserveStock) -> Result<(), HandlerError> {
    let order = m.order_id.to_string();
    // A ReserveStock and a ReleaseStock of one order never decide at once (PostgreSQL;
    // SQLite has one writer).
    work.lock(&format!("inventory:{order}")).await?;
    let (already,): (i64,) = work
        .one(
            "SELECT COUNT(*) FROM inv_reservations WHERE order_id = ?",
            args![&order],
        )
        .await?;
    if already > 0 {
        return work.emit(&StockReserved {
            order_id: m.order_id,
        });
    }
    work.exec("SAVEPOINT reserve", args![]).await?;
    let mut short = None;
    for line in &m.lines {
        let qty = i64::from(line.quantity);
        let took = work
            .exec(
                "UPDATE inv_stock SET available = available - ? WHERE product_id = ? AND available >= ?",
                args![qty, &line.product_id, qty],
            )
            .await?;
        if took == 0 {
            short = Some(line.product_id.clone());
            break;
        }
        work.exec(
            "INSERT INTO inv_reservations (order_id, product_id, quantity) VALUES (?, ?, ?) \
             ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = inv_reservations.quantity + excluded.quantity",
            args![&order, &line.product_id, qty],
        )
        .await?;
    }
    if let Some(product) = short {
        work.exec("ROLLBACK TO reserve", args![]).await?;
        tracing::info!(%product, "stock rejected");
        work.emit(&StockRejected {
            order_id: m.order_id,
            reason: format!("out-of-stock: {product}"),
        })?;
    } else {
        work.emit(&StockReserved {
            order_id: m.order_id,
        })?;
    }
    work.exec("RELEASE reserve", args![]).await?;
    Ok(())
}

async fn release(db: &Db, m: ReleaseStock, ctx: &ConsumeContext) -> Result<(), HandlerError> {
    db.work(ctx, move |work| Box::pin(release_in(work, m)))
        .await?;
    Ok(())
}

async fn release_in(work: &mut Work<'_>, m: ReleaseStock) -> Result<(), HandlerError> {
    let order = m.order_id.to_string();
    work.lock(&format!("inventory:{order}")).await?;
    let rows: Vec<(String, i64)> = work
        .all(
            "SELECT product_id, quantity FROM inv_reservations WHERE order_id = ? AND released = 0",
            args![&order],
        )
        .await?;
    for (product, qty) in rows {
        work.exec(
            "UPDATE inv_stock SET available = available + ? WHERE product_id = ?",
            args![qty, &product],
        )
        .await?;
    }
    work.exec(
        "UPDATE inv_reservations SET released = 1 WHERE order_id = ?",
        args![&order],
    )
    .await?;
    work.emit(&StockReleased {
        order_id: m.order_id,
    })
}
