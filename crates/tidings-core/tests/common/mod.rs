//! Contracts and constants shared by the bus-level test files.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings_core::Message;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.order-placed", version = 2, kind = "event")]
pub struct OrderPlaced {
    pub order_id: u32,
    pub total_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.order-placed", version = 1, kind = "event")]
pub struct OrderPlacedV1 {
    pub order_id: u32,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced {
            order_id: v1.order_id,
            total_cents: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.reserve-stock", kind = "command")]
pub struct ReserveStock {
    pub order_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.stock-reserved", kind = "event")]
pub struct StockReserved {
    pub order_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.keyed", kind = "command")]
pub struct Keyed {
    pub key: u32,
    pub seq: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.ping", kind = "command")]
pub struct Ping {
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(name = "test.pong", kind = "event")]
pub struct Pong {
    pub n: u32,
}

pub const WAIT: Duration = Duration::from_secs(60);
