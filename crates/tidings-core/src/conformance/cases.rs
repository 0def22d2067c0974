//! The conformance cases. Each is `pub async fn name(factory: &impl TransportFactory)`:
//! generic over any transport, it uses only the [`Transport`](crate::transport::Transport)
//! trait, declares its own uniquely named queues, waits a bounded time for everything (a
//! broken transport fails, never hangs), and panics with a message saying which part of
//! the contract was broken. The list run by every transport is in
//! [`conformance_tests!`](crate::conformance_tests).

mod basic;
mod dead_letters;
mod lifecycle;
mod ordering;
mod poison;
mod settlement;
mod volume;

pub use basic::{
    close_rejects_further_calls, oversize_message_rejected, publish_fans_out_to_subscribers_only,
    send_receive,
};
pub use dead_letters::{
    error_queue_keeps_headers, replay_moves_dead_letter_back,
    replay_to_unknown_queue_keeps_dead_letters, stats_reflect_reality,
};
pub use lifecycle::delete_queue_removes_queue_messages_and_error_queue;
pub use ordering::{
    ordered_delay_holds_back_only_its_key, parked_key_waits_for_replay,
    per_key_order_under_concurrency,
};
pub use poison::{
    undecodable_message_is_dead_lettered, undecodable_message_parks_its_key,
    undecodable_message_releases_its_key,
};
pub use settlement::{
    ack_removes, delivery_count_grows, extend_lease_keeps_delivery_hidden,
    nack_with_delay_comes_back_no_earlier, scheduled_delivery, shutdown_releases_in_flight,
    unacked_delivery_comes_back_after_receiver_ends,
};
pub use volume::{competing_consumers_get_each_message_once, many_messages_no_loss_no_duplicate};
