//! Analytics (choreography): counts outcomes and money as orders end.

use tidings_core::{ConsumeContext, Endpoint, HandlerError};

use crate::args;
use crate::contracts::{OrderCancelled, OrderCompleted};
use crate::db::{Db, Work};

/// The endpoint's queue name.
pub const QUEUE: &str = "analytics";

/// The analytics endpoint.
pub fn endpoint(db: Db) -> Endpoint {
    let d2 = db.clone();
    Endpoint::new(QUEUE)
        .handle_fn(move |m: OrderCompleted, ctx: ConsumeContext| {
            let db = db.clone();
            async move { count(&db, &ctx, "completed", m.total_cents).await }
        })
        .handle_fn(move |m: OrderCancelled, ctx: ConsumeContext| {
            let db = d2.clone();
            let outcome = format!("cancelled: {}", m.reason.split(':').next().unwrap_or(""));
            async move { count(&db, &ctx, &outcome, 0).await }
        })
}

async fn count(
    db: &Db,
    ctx: &ConsumeContext,
    outcome: &str,
    cents: i64,
) -> Result<(), HandlerError> {
    let outcome = outcome.to_string();
    db.work(ctx, move |work: &mut Work<'_>| {
        Box::pin(async move {
            work.exec(
                "INSERT INTO stats_outcomes (outcome, orders, cents) VALUES (?, 1, ?) \
                 ON CONFLICT (outcome) DO UPDATE SET orders = stats_outcomes.orders + 1, cents = stats_outcomes.cents + excluded.cents",
                args![outcome, cents],
            )
            .await?;
            Ok(())
        })
    })
    .await?;
    Ok(())
}
