//! Inventory: reserves stock for an order (all lines or none) and releases it again as a
//! compensation. Stock never goes negative: every decrement is a conditional UPDATE and the
//! column has a CHECK constraint.

use sqlx::Row;
use tidings_core::{ConsumeContext, Endpoint, HandlerError};
use tracing::Instrument;

use crate::contracts::{ReleaseStock, ReserveStock, StockRejected, StockReleased, StockReserved};
use crate::db::{db_err, Db, Work};

/// The endpoint's queue name.
pub const QUEUE: &str = "inventory";

/// Seeds stock for `products` (id, units) unless already present.
pub async fn seed(db: &Db, products: &[(&str, i64)]) -> anyhow::Result<()> {
    let products: Vec<(String, i64)> = products.iter().map(|(p, u)| (p.to_string(), *u)).collect();
    db.write(move |conn| {
        Box::pin(async move {
            for (id, units) in products {
                sqlx::query(
                    "INSERT INTO inv_stock (product_id, initial, available) VALUES (?, ?, ?) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(units)
                .bind(units)
                .execute(&mut *conn)
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
    let already: i64 = sqlx::query("SELECT COUNT(*) FROM inv_reservations WHERE order_id = ?")
        .bind(&order)
        .fetch_one(work.conn())
        .await
        .and_then(|r| r.try_get(0))
        .map_err(db_err)?;
    if already > 0 {
        return work.emit(&StockReserved {
            order_id: m.order_id,
        });
    }
    sqlx::query("SAVEPOINT reserve")
        .execute(work.conn())
        .await
        .map_err(db_err)?;
    let mut short = None;
    for line in &m.lines {
        let took = sqlx::query(
            "UPDATE inv_stock SET available = available - ? WHERE product_id = ? AND available >= ?",
        )
        .bind(i64::from(line.quantity))
        .bind(&line.product_id)
        .bind(i64::from(line.quantity))
        .execute(work.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
        if took == 0 {
            short = Some(line.product_id.clone());
            break;
        }
        sqlx::query(
            "INSERT INTO inv_reservations (order_id, product_id, quantity) VALUES (?, ?, ?) \
             ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = quantity + excluded.quantity",
        )
        .bind(&order)
        .bind(&line.product_id)
        .bind(i64::from(line.quantity))
        .execute(work.conn())
        .await
        .map_err(db_err)?;
    }
    if let Some(product) = short {
        sqlx::query("ROLLBACK TO reserve")
            .execute(work.conn())
            .await
            .map_err(db_err)?;
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
    sqlx::query("RELEASE reserve")
        .execute(work.conn())
        .await
        .map_err(db_err)?;
    Ok(())
}

async fn release(db: &Db, m: ReleaseStock, ctx: &ConsumeContext) -> Result<(), HandlerError> {
    db.work(ctx, move |work| Box::pin(release_in(work, m)))
        .await?;
    Ok(())
}

async fn release_in(work: &mut Work<'_>, m: ReleaseStock) -> Result<(), HandlerError> {
    let order = m.order_id.to_string();
    let rows = sqlx::query(
        "SELECT product_id, quantity FROM inv_reservations WHERE order_id = ? AND released = 0",
    )
    .bind(&order)
    .fetch_all(work.conn())
    .await
    .map_err(db_err)?;
    for row in rows {
        let product: String = row.try_get("product_id").map_err(db_err)?;
        let qty: i64 = row.try_get("quantity").map_err(db_err)?;
        sqlx::query("UPDATE inv_stock SET available = available + ? WHERE product_id = ?")
            .bind(qty)
            .bind(&product)
            .execute(work.conn())
            .await
            .map_err(db_err)?;
    }
    sqlx::query("UPDATE inv_reservations SET released = 1 WHERE order_id = ?")
        .bind(&order)
        .execute(work.conn())
        .await
        .map_err(db_err)?;
    work.emit(&StockReleased {
        order_id: m.order_id,
    })
}
