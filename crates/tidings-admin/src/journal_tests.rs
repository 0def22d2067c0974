//! Unit tests of [`MessageJournal`]: bounded size, order, filtering, outcomes.

use std::time::Duration;

use tidings_core::{Envelope, FaultReason};

use super::*;

fn observation(endpoint: &str, correlation: Option<&str>, outcome: Outcome) -> Observation {
    let mut envelope = Envelope::new("shop.reserve", 2, &b"{}"[..]);
    envelope.correlation_id = correlation.map(str::to_string);
    Observation {
        endpoint: endpoint.into(),
        envelope,
        delivery_count: 1,
        outcome,
    }
}

#[test]
fn keeps_only_the_last_capacity_entries() {
    let j = MessageJournal::with_capacity(3);
    assert!(j.is_empty());
    for i in 0..5 {
        j.observe(observation(
            &format!("ep-{i}"),
            Some("c"),
            Outcome::Consumed,
        ));
    }
    assert_eq!((j.len(), j.capacity(), j.dropped()), (3, 3, 2));
    let kept: Vec<_> = j.recent(10).into_iter().map(|e| e.endpoint).collect();
    assert_eq!(kept, ["ep-2", "ep-3", "ep-4"]);
    assert_eq!(j.recent(1)[0].endpoint, "ep-4");
    assert_eq!(MessageJournal::new().capacity(), DEFAULT_JOURNAL_CAPACITY);
    assert_eq!(MessageJournal::with_capacity(0).capacity(), 1);
}

#[test]
fn filters_by_correlation_in_the_order_deliveries_ended() {
    let j = MessageJournal::with_capacity(100);
    let clone = j.clone(); // clones share the buffer (one on the bus, one in the admin state)
    clone.observe(observation("orders", Some("A"), Outcome::Consumed));
    j.observe(observation("orders", Some("B"), Outcome::Consumed));
    clone.observe(observation("payments", Some("A"), Outcome::Consumed));
    j.observe(observation("audit", None, Outcome::Consumed));
    j.observe(observation("shipping", Some("A"), Outcome::Expired));

    let a = j.by_correlation("A");
    let eps: Vec<_> = a.iter().map(|e| e.endpoint.as_str()).collect();
    assert_eq!(eps, ["orders", "payments", "shipping"]);
    assert!(a
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));
    assert_eq!(a[2].outcome, "expired");
    assert_eq!(j.by_correlation("B").len(), 1);
    assert!(j.by_correlation("nope").is_empty());
    assert!(j.by_correlation("").is_empty());
    assert_eq!(j.len(), 5);
}

#[test]
fn records_outcomes_with_their_details() {
    let j = MessageJournal::default();
    let long = "x".repeat(MAX_ERROR_CHARS + 50);
    let mut o = observation(
        "orders",
        Some("c"),
        Outcome::Redelivered {
            delay: Duration::from_millis(1500),
            error: long.clone(),
        },
    );
    o.delivery_count = 2;
    let id = o.envelope.id;
    let cause = uuid::Uuid::now_v7();
    o.envelope.causation_id = Some(cause);
    j.observe(o);
    j.observe(observation(
        "orders",
        Some("c"),
        Outcome::Deferred {
            delay: Duration::from_secs(5),
        },
    ));
    j.observe(observation(
        "orders",
        Some("c"),
        Outcome::DeadLettered {
            reason: FaultReason::Panicked,
            error: "boom".into(),
        },
    ));

    let e = j.by_correlation("c");
    assert_eq!(e.len(), 3);
    assert_eq!(
        (e[0].id, e[0].causation_id, e[0].delivery_count),
        (id, Some(cause), 2)
    );
    assert_eq!(
        (e[0].message_type.as_str(), e[0].version),
        ("shop.reserve", 2)
    );
    assert_eq!(e[0].outcome, "redelivered");
    assert_eq!(e[0].delay_ms, Some(1500));
    let err = e[0].error.as_deref().unwrap();
    assert_eq!(
        err.chars().count(),
        MAX_ERROR_CHARS + 1,
        "cut, with an ellipsis"
    );
    assert!(err.ends_with('…'));
    assert_eq!(
        (e[1].outcome.as_str(), e[1].delay_ms),
        ("deferred", Some(5000))
    );
    assert_eq!(e[2].outcome, "dead-lettered");
    assert_eq!(e[2].reason.as_deref(), Some("panicked"));
    assert_eq!(e[2].error.as_deref(), Some("boom"));
    assert_eq!(
        format!("{j:?}"),
        "MessageJournal { len: 3, capacity: 10000 }"
    );
}
