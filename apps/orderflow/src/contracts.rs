//! Message contracts of OrderFlow: the events and commands that travel between services.
//!
//! `OrderPlaced` exists in two versions: v1 (no notification channel, no shipping
//! country) and v2; consumers register `Endpoint::upcast::<OrderPlacedV1, OrderPlaced>()`
//! so a v1 message from an older producer still flows (see docs/orderflow.md).

use serde::{Deserialize, Serialize};
use tidings_core::Message;
use uuid::Uuid;

/// How a customer wants to be told about their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// E-mail.
    Email,
    /// Text message.
    Sms,
    /// Mobile push notification.
    Push,
}

impl Channel {
    /// The channel's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderLine {
    /// Catalog product id, e.g. `P-001`.
    pub product_id: String,
    /// Units, at least 1.
    pub quantity: u32,
}

/// An order was accepted by the API (current version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "orderflow.order-placed", version = 2, kind = "event")]
pub struct OrderPlaced {
    /// The order.
    pub order_id: Uuid,
    /// Who ordered.
    pub customer_id: String,
    /// What.
    pub lines: Vec<OrderLine>,
    /// Order total in cents.
    pub total_cents: i64,
    /// Notification preference (new in v2).
    pub channel: Channel,
    /// ISO country code to ship to (new in v2).
    pub ship_to: String,
    /// When the API accepted it.
    pub placed_at: chrono::DateTime<chrono::Utc>,
}

/// Version 1 of `orderflow.order-placed`, still sent by older producers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "orderflow.order-placed", version = 1, kind = "event")]
pub struct OrderPlacedV1 {
    /// The order.
    pub order_id: Uuid,
    /// Who ordered.
    pub customer_id: String,
    /// What.
    pub lines: Vec<OrderLine>,
    /// Order total in cents.
    pub total_cents: i64,
    /// When it was accepted.
    pub placed_at: chrono::DateTime<chrono::Utc>,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced {
            order_id: v1.order_id,
            customer_id: v1.customer_id,
            lines: v1.lines,
            total_cents: v1.total_cents,
            channel: Channel::Email,
            ship_to: "US".into(),
            placed_at: v1.placed_at,
        }
    }
}

macro_rules! contract {
    ($(#[$doc:meta])* $name:ident, $wire:literal, $kind:literal { $($(#[$fdoc:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
        #[message(name = $wire, kind = $kind)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }
    };
}

contract!(
    /// Saga → inventory: reserve every line, or none.
    ReserveStock, "orderflow.reserve-stock", "command" {
        /// The order.
        order_id: Uuid,
        /// What to reserve.
        lines: Vec<OrderLine>,
    }
);
contract!(
    /// Inventory: all lines are reserved.
    StockReserved, "orderflow.stock-reserved", "event" {
        /// The order.
        order_id: Uuid,
    }
);
contract!(
    /// Inventory: not enough stock; nothing reserved.
    StockRejected, "orderflow.stock-rejected", "event" {
        /// The order.
        order_id: Uuid,
        /// Why (which product ran out).
        reason: String,
    }
);
contract!(
    /// Saga → inventory (compensation): give the order's stock back.
    ReleaseStock, "orderflow.release-stock", "command" {
        /// The order.
        order_id: Uuid,
    }
);
contract!(
    /// Inventory: the order's reservation was released.
    StockReleased, "orderflow.stock-released", "event" {
        /// The order.
        order_id: Uuid,
    }
);
contract!(
    /// Saga → payments: charge the customer.
    CapturePayment, "orderflow.capture-payment", "command" {
        /// The order (also the payment intent: one charge per order).
        order_id: Uuid,
        /// Who pays.
        customer_id: String,
        /// How much, in cents.
        amount_cents: i64,
    }
);
contract!(
    /// Payments: the charge went through.
    PaymentCaptured, "orderflow.payment-captured", "event" {
        /// The order.
        order_id: Uuid,
        /// Amount charged, in cents.
        amount_cents: i64,
    }
);
contract!(
    /// Payments: the charge was declined (or the intent was voided first).
    PaymentFailed, "orderflow.payment-failed", "event" {
        /// The order.
        order_id: Uuid,
        /// Why.
        reason: String,
    }
);
contract!(
    /// Saga → payments (compensation): refund a capture, or void the intent if none yet.
    RefundPayment, "orderflow.refund-payment", "command" {
        /// The order.
        order_id: Uuid,
        /// Why.
        reason: String,
    }
);
contract!(
    /// Payments: a capture was refunded.
    PaymentRefunded, "orderflow.payment-refunded", "event" {
        /// The order.
        order_id: Uuid,
        /// Amount refunded, in cents.
        amount_cents: i64,
    }
);
contract!(
    /// Saga → saga (scheduled): the payment deadline passed.
    PaymentTimeout, "orderflow.payment-timeout", "command" {
        /// The order.
        order_id: Uuid,
    }
);
contract!(
    /// Saga → shipping: ship it.
    CreateShipment, "orderflow.create-shipment", "command" {
        /// The order.
        order_id: Uuid,
        /// Destination country.
        ship_to: String,
        /// What to ship.
        lines: Vec<OrderLine>,
    }
);
contract!(
    /// Shipping: a shipment exists.
    ShipmentCreated, "orderflow.shipment-created", "event" {
        /// The order.
        order_id: Uuid,
        /// Tracking number.
        tracking: String,
    }
);
contract!(
    /// Shipping: the order cannot be shipped.
    ShipmentFailed, "orderflow.shipment-failed", "event" {
        /// The order.
        order_id: Uuid,
        /// Why.
        reason: String,
    }
);
contract!(
    /// Saga: the order is done.
    OrderCompleted, "orderflow.order-completed", "event" {
        /// The order.
        order_id: Uuid,
        /// Who ordered.
        customer_id: String,
        /// Where to tell them.
        channel: Channel,
        /// Amount charged, in cents.
        total_cents: i64,
    }
);
contract!(
    /// Saga: the order was cancelled; compensations have been sent.
    OrderCancelled, "orderflow.order-cancelled", "event" {
        /// The order.
        order_id: Uuid,
        /// Who ordered.
        customer_id: String,
        /// Where to tell them.
        channel: Channel,
        /// Why (`out-of-stock`, `payment-declined`, `payment-timeout`, `undeliverable`).
        reason: String,
    }
);
