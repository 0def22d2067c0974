//! TLS end to end, each against a throw-away TLS server with certificates made here by
//! `openssl` (a CA, a server certificate for 127.0.0.1/localhost signed by it, and a
//! second, unrelated CA to prove that a wrong one is refused):
//!
//! - NATS (`nats.rs`): a TLS-only `nats-server`; `tls://…?tls_ca=` sends, receives and
//!   acks; a plain `nats://` connection is refused.
//! - PostgreSQL (`postgres.rs`): a cluster made by `initdb` with `ssl=on` on a free port,
//!   accepting only TLS connections (`hostssl`); `sslmode=require` and
//!   `sslmode=verify-full&sslrootcert=` declare, send, receive and ack; `verify-full` with
//!   the wrong CA and `sslmode=disable` are refused with a clear error.
//! - RabbitMQ (`rabbitmq.rs`): `stunnel` terminating TLS in front of the local broker
//!   (127.0.0.1:5672); `amqps://…?tls_ca=` declares, sends, receives and acks; the wrong
//!   CA, and no CA (platform roots only), are refused with a clear error.
//!
//! A missing tool or service skips its test with a printed reason; with `CI=true` it fails.

mod nats;
mod postgres;
mod rabbitmq;
mod support;
