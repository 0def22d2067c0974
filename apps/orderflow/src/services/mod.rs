//! The services: each is one endpoint owning its tables (never reading another's).

pub mod analytics;
pub mod gateway;
pub mod inventory;
pub mod notifications;
pub mod payments;
pub mod read_model;
pub mod saga;
pub mod shipping;

use tidings_core::ConsumeContext;

/// A tracing span for one handled message, carrying the correlation id into log lines.
pub(crate) fn span(ctx: &ConsumeContext, order_id: uuid::Uuid) -> tracing::Span {
    tracing::info_span!(
        "handle",
        endpoint = ctx.endpoint(),
        message_type = %ctx.envelope().message_type,
        correlation_id = ctx.correlation_id().unwrap_or(""),
        %order_id
    )
}
