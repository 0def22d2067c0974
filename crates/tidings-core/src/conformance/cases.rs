//! The conformance cases. Each is `pub async fn name(factory: &impl TransportFactory)` and
//! panics with a clear message when the transport breaks the contract.
//! (Filled in by the conformance work; see the list in `conformance_tests!`.)
