//! OrderFlow's order request parsing (`POST /orders` bodies): JSON, the type, every bound
//! the published schema states (the catalog check is the handler's, over the database).

use orderflow::api::parse_order;

/// Whatever the body, parsing answers: a 400 problem saying what is wrong, or an order
/// within every bound whose re-encoding parses back to itself with the same fingerprint
/// (the idempotency check compares fingerprints).
pub fn orderflow_order(data: &[u8]) {
    match parse_order(data) {
        Err(problem) => {
            assert_eq!(problem.status, 400, "{problem:?}");
            assert!(!problem.detail.is_empty());
        }
        Ok(order) => {
            assert!(order.violations().is_empty(), "accepted {order:?}");
            let json = serde_json::to_vec(&order).expect("an order encodes");
            let again = parse_order(&json).expect("a re-encoded order parses");
            assert_eq!(again, order);
            assert_eq!(again.fingerprint(), order.fingerprint());
        }
    }
}
