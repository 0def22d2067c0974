//! Fuzz cases for the decoders that read bytes from outside: each transport's envelope
//! decoding, the admin API's request parsing and OrderFlow's order parsing.
//!
//! Every function takes raw bytes (what a fuzzer mutates), feeds them to the decoder the
//! way the transport or server does, and **panics when an invariant breaks** — that is
//! what a fuzzer looks for. None needs a broker: the transports' pure decode functions are
//! called directly, the HTTP APIs go through their public routers with
//! `tower::ServiceExt::oneshot`.
//!
//! Two drivers share these cases: the cargo-fuzz targets in `fuzz/` (coverage guided,
//! run for minutes locally) and the proptest runs in `tests/` (CI, structured inputs).

mod admin;
mod amqp;
mod envelope;
mod nats;
mod order;

pub use admin::admin_request;
pub use amqp::{rabbitmq_envelope, rabbitmq_properties};
pub use envelope::envelope_json;
pub use nats::nats_envelope;
pub use order::orderflow_order;
