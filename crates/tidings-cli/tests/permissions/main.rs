//! `tidings topology --permissions`: the generated permissions applied to the live
#![allow(unreachable_pub, missing_docs)]
//! brokers — each service works with its own credentials and is refused on another
//! service's queue. One test binary, a module per broker; see `shop.rs` for the topology.

#[path = "../common/mod.rs"]
mod common;
mod nats;
mod postgres;
mod rabbitmq;
mod shop;
