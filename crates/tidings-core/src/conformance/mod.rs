//! The transport conformance suite (feature `conformance`): the same tests, generic over a
//! [`TransportFactory`], run by every transport crate from its `tests/conformance.rs`:
//!
//! ```ignore
//! struct Factory;
//! #[async_trait::async_trait]
//! impl tidings_core::conformance::TransportFactory for Factory {
//!     async fn create(&self) -> tidings_core::Result<std::sync::Arc<dyn tidings_core::transport::Transport>> { .. }
//! }
//! tidings_core::conformance_tests!(Factory);
//! ```
//!
//! Every case uses fresh, uniquely named queues (`cf_<what>_<8 hex>`, message types
//! `conformance.<what>_<8 hex>`), so a persistent broker can be reused. When a case ends
//! (passed or failed) [`run_case`] deletes every queue it declared with
//! [`Transport::delete_queue`] on a fresh connection, so runs leave no queues behind; a
//! failed delete fails a case that passed.
//!
//! What the suite assumes of a transport beyond the [`Transport`] docs:
//! - `create` may be called several times per case ("a second connection"); all handles
//!   see the same queues. `close_rejects_further_calls` closes the handle it created.
//! - Every wait is bounded (15 s for a delivery, stats or dead-letter listing to show up,
//!   which are polled, so eventually-consistent stats are fine). A pending `recv` is only
//!   cancelled where the case expects nothing more, so `recv` need not be cancel-safe.
//! - Timestamps are compared at millisecond precision; headers must come back exactly
//!   as sent (a transport strips any headers of its own).
//! - A transport that maps a semantic differently (and documents it) names the case in
//!   [`TransportFactory::unsupported`]; the case then prints `skipped: ..` and passes.

pub mod cases;
mod support;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;

use crate::transport::Transport;
use crate::Result;

/// Makes a transport for one conformance case.
#[async_trait]
pub trait TransportFactory: Send + Sync + 'static {
    /// A connected transport. Cases may call it more than once (e.g. to get a second
    /// connection to the same broker/database); all transports from one factory share data.
    async fn create(&self) -> Result<Arc<dyn Transport>>;

    /// Cases this transport does not support, with the reason (a semantic it documents
    /// as mapped differently). Such a case prints `skipped: <case>: <reason>` and passes.
    /// Default: none.
    fn unsupported(&self, case: &str) -> Option<&'static str> {
        let _ = case;
        None
    }

    /// Puts `raw` into `queue` through the transport's native path, around Tidings'
    /// encoding (a row inserted with SQL, an AMQP publish without Tidings properties, a
    /// NATS publish on the queue's subject), as a foreign producer or corruption would:
    /// the poison-message cases check that the receiver dead-letters it as `undecodable`.
    /// `partition_key` goes wherever the native format keeps a key apart from the bytes
    /// (a row's column, an AMQP header, the NATS partition subject).
    ///
    /// Default: [`Error::Unsupported`](crate::Error::Unsupported); the poison cases then
    /// print `skipped: ..` and pass (the in-memory transport has no bytes to corrupt).
    async fn inject_raw(&self, queue: &str, raw: &[u8], partition_key: Option<&str>) -> Result<()> {
        let _ = (queue, raw, partition_key);
        Err(crate::Error::Unsupported {
            operation: "inject_raw",
            transport: "conformance factory",
        })
    }
}

/// Runs one case (`case` is the case's future, not started yet), then deletes every queue
/// it declared — also when it panicked, whose panic is then raised again. Used by
/// [`conformance_tests!`](crate::conformance_tests).
pub async fn run_case(factory: &impl TransportFactory, case: impl Future<Output = ()>) {
    let declared = support::Declared::default();
    let outcome = support::DECLARED
        .scope(declared.clone(), AssertUnwindSafe(case).catch_unwind())
        .await;
    let failed = support::delete_declared(factory, &declared).await;
    match outcome {
        Err(panic) => {
            for f in &failed {
                eprintln!("conformance cleanup: {f}");
            }
            std::panic::resume_unwind(panic)
        }
        Ok(()) => assert!(
            failed.is_empty(),
            "deleting the queues the case declared failed: {failed:?}"
        ),
    }
}

/// A queue name unique to this run: `<prefix>_<8 hex>`.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..8])
}

/// Expands to one `#[tokio::test]` per conformance case, each calling
/// `cases::<name>(&factory)`. `$factory` is an expression building the factory.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@cases $factory;
            send_receive,
            publish_fans_out_to_subscribers_only,
            competing_consumers_get_each_message_once,
            ack_removes,
            nack_with_delay_comes_back_no_earlier,
            delivery_count_grows,
            unacked_delivery_comes_back_after_receiver_ends,
            per_key_order_under_concurrency,
            error_queue_keeps_headers,
            replay_moves_dead_letter_back,
            scheduled_delivery,
            oversize_message_rejected,
            shutdown_releases_in_flight,
            many_messages_no_loss_no_duplicate,
            parked_key_waits_for_replay,
            stats_reflect_reality,
            extend_lease_keeps_delivery_hidden,
            close_rejects_further_calls,
            ordered_delay_holds_back_only_its_key,
            replay_to_unknown_queue_keeps_dead_letters,
            delete_queue_removes_queue_messages_and_error_queue,
            undecodable_message_is_dead_lettered,
            undecodable_message_releases_its_key,
            undecodable_message_parks_its_key,
        );
    };
    (@cases $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory;
                let case = stringify!($name);
                if let Some(why) =
                    $crate::conformance::TransportFactory::unsupported(&factory, case)
                {
                    eprintln!("skipped: {case}: {why}");
                    return;
                }
                $crate::conformance::run_case(
                    &factory,
                    $crate::conformance::cases::$name(&factory),
                )
                .await;
            }
        )*
    };
}
