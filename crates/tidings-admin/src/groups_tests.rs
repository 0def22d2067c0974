//! Unit tests of the failure grouping.

use tidings_core::{Envelope, Fault, FaultReason};

use super::*;

fn letter(queue: &str, message_type: &str, reason: FaultReason, error: &str) -> DeadLetter {
    let mut env = Envelope::new(message_type, 1, &b"{}"[..]);
    Fault::new(reason, error, queue).apply(&mut env);
    DeadLetter {
        queue: queue.into(),
        envelope: env,
        dead_lettered_at: Utc::now(),
    }
}

#[test]
fn numbers_and_uuids_are_masked_words_are_not() {
    assert_eq!(
        normalize_error("order 17 not found (took 1.5s, id=9f1c2d3e-0000-4000-8000-0123456789ab)"),
        "order <n> not found (took <n>s, id=<uuid>)"
    );
    assert_eq!(normalize_error("sha256 v2 failed"), "sha256 v2 failed");
    assert_eq!(normalize_error("é 12 ü"), "é <n> ü");
    assert_eq!(normalize_error(""), "");
    for long in [
        "x y".repeat(1000),
        "x".repeat(1000),
        "é".repeat(1000),
        "1 ".repeat(1000),
    ] {
        let n = normalize_error(&long);
        assert!(n.len() <= 300 && n.len() >= 290, "{}", n.len());
    }
}

#[test]
fn groups_by_type_reason_and_masked_error() {
    let letters = vec![
        letter(
            "orders",
            "shop.reserve",
            FaultReason::HandlerFailed,
            "order 1 not found",
        ),
        letter(
            "orders",
            "shop.reserve",
            FaultReason::HandlerFailed,
            "order 2 not found",
        ),
        letter(
            "audit",
            "shop.reserve",
            FaultReason::HandlerFailed,
            "order 3 not found",
        ),
        letter(
            "orders",
            "shop.reserve",
            FaultReason::Panicked,
            "order 4 not found",
        ),
        letter(
            "orders",
            "shop.charge",
            FaultReason::HandlerFailed,
            "order 5 not found",
        ),
        letter(
            "orders",
            "shop.reserve",
            FaultReason::HandlerFailed,
            "card declined",
        ),
    ];
    let groups = group(&letters);
    assert_eq!(groups.len(), 4, "{groups:#?}");
    let big = &groups[0];
    assert_eq!(big.count, 3);
    assert_eq!(
        (
            big.message_type.as_str(),
            big.reason.as_str(),
            big.error.as_str()
        ),
        ("shop.reserve", "handler-failed", "order <n> not found")
    );
    assert_eq!(big.endpoints.get("orders"), Some(&2));
    assert_eq!(big.endpoints.get("audit"), Some(&1));
    assert_eq!(big.example_error, "order 1 not found");
    // The key is what replay selects by: the same for every member, stable, distinct.
    assert_eq!(group_key(&letters[0]), big.group);
    assert_eq!(group_key(&letters[2]), big.group);
    assert_ne!(group_key(&letters[3]), big.group);
    assert_ne!(group_key(&letters[4]), big.group);
    assert_eq!(big.group.len(), 16);
    assert_eq!(fnv1a(&["a", "b"]), fnv1a(&["a", "b"]));
    assert_ne!(fnv1a(&["ab", ""]), fnv1a(&["a", "b"]));
    assert!(groups.iter().skip(1).all(|g| g.count == 1));
}
