//! Tests of the retry layer.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::pipeline::BoxPipeline;
use crate::transport::memory::MemoryTransport;
use crate::{ConsumeContext, Envelope, Producer};

fn request() -> Consume {
    let producer = Producer::new(Arc::new(MemoryTransport::new()), HashMap::new(), None);
    Consume::new(ConsumeContext::new(
        Envelope::new("t", 1, "{}"),
        producer,
        "endpoint",
        1,
    ))
}

type Calls = Arc<Mutex<Vec<(Instant, u32)>>>;

/// A handler that fails with `make_error` until attempt `succeed_on` (never if 0), and
/// records the time and attempt number of each call.
fn flaky(
    succeed_on: u32,
    make_error: fn() -> HandlerError,
) -> (
    impl Service<Consume, Response = (), Error = HandlerError, Future = impl Send> + Clone + Send + Sync,
    Calls,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let svc = service_fn(move |req: Consume| {
        let calls = calls.clone();
        async move {
            let attempt = req.ctx.attempt();
            calls.lock().unwrap().push((Instant::now(), attempt));
            if succeed_on != 0 && attempt >= succeed_on {
                Ok(())
            } else {
                Err(make_error())
            }
        }
    });
    (svc, seen)
}

fn transient() -> HandlerError {
    HandlerError::transient("db busy")
}

#[tokio::test(start_paused = true)]
async fn follows_the_interval_list_exactly() {
    let intervals = vec![
        Duration::from_millis(100),
        Duration::from_millis(500),
        Duration::from_secs(2),
    ];
    let (inner, calls) = flaky(0, transient);
    let svc = RetryLayer::new(Intervals(intervals.clone())).layer(inner);
    let err = svc.oneshot(request()).await.unwrap_err();
    assert_eq!(err.message(), "db busy");
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 4, "one attempt plus one retry per interval");
    let attempts: Vec<u32> = calls.iter().map(|c| c.1).collect();
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    for (i, want) in intervals.iter().enumerate() {
        assert_eq!(calls[i + 1].0 - calls[i].0, *want, "wait before retry {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn stops_retrying_once_an_attempt_succeeds() {
    let (inner, calls) = flaky(3, transient);
    let svc = RetryLayer::new(Intervals::fixed(5, Duration::from_secs(1))).layer(inner);
    svc.oneshot(request()).await.unwrap();
    let attempts: Vec<u32> = calls.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_not_retried() {
    let (inner, calls) = flaky(0, || HandlerError::permanent("bad input"));
    let svc = RetryLayer::new(Intervals::fixed(3, Duration::from_secs(1))).layer(inner);
    let err = svc.oneshot(request()).await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn deferrals_are_not_retried() {
    let (inner, calls) = flaky(0, || HandlerError::defer(Duration::from_secs(9), "open"));
    let svc = RetryLayer::new(Exponential::default()).layer(inner);
    let err = svc.oneshot(request()).await.unwrap_err();
    assert_eq!(err.deferral(), Some(Duration::from_secs(9)));
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn user_filter_decides_which_errors_are_retried() {
    let policy = Intervals::fixed(3, Duration::from_millis(10))
        .filter(|e: &HandlerError| e.message().contains("busy"));
    let (inner, calls) = flaky(0, || HandlerError::transient("not found"));
    let svc = RetryLayer::new(policy.clone()).layer(inner);
    svc.oneshot(request()).await.unwrap_err();
    assert_eq!(calls.lock().unwrap().len(), 1, "filtered out: no retry");

    let (inner, calls) = flaky(0, transient);
    let svc = RetryLayer::new(policy).layer(inner);
    svc.oneshot(request()).await.unwrap_err();
    assert_eq!(calls.lock().unwrap().len(), 4, "accepted: retried");
}

#[tokio::test(start_paused = true)]
async fn no_retry_makes_one_attempt() {
    let (inner, calls) = flaky(0, transient);
    RetryLayer::new(NoRetry)
        .layer(inner)
        .oneshot(request())
        .await
        .unwrap_err();
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn exponential_waits_grow_and_respect_max_retries() {
    let policy =
        Exponential::new(Duration::from_millis(100), Duration::from_millis(350), 4).jitter(0.0);
    let (inner, calls) = flaky(0, transient);
    let svc: BoxPipeline = BoxPipeline::new(RetryLayer::new(policy).layer(inner));
    svc.oneshot(request()).await.unwrap_err();
    let calls = calls.lock().unwrap();
    let waits: Vec<Duration> = calls.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert_eq!(
        waits,
        [100, 200, 350, 350].map(Duration::from_millis).to_vec()
    );
}

proptest! {
    #[test]
    fn jittered_delay_stays_within_bounds(
        attempt in 1u32..64,
        initial_ms in 0u64..10_000,
        factor in 1.0f64..10.0,
        cap_ms in 0u64..600_000,
        jitter in 0.0f64..=1.0,
    ) {
        let policy = Exponential {
            initial: Duration::from_millis(initial_ms),
            factor,
            max: Duration::from_millis(cap_ms),
            max_retries: u32::MAX,
            jitter,
        };
        let cap = Duration::from_millis(cap_ms);
        let exact = (initial_ms as f64 / 1000.0) * factor.powi(attempt as i32 - 1);
        let base = policy.base_delay(attempt - 1);
        prop_assert!(base <= cap);
        prop_assert!((base.as_secs_f64() - exact.min(cap.as_secs_f64())).abs() < 1e-6);
        let delay = policy.next_delay(attempt, &transient()).unwrap();
        prop_assert!(delay <= base && delay <= cap, "{delay:?} > {base:?}");
        let floor = base.as_secs_f64() * (1.0 - jitter);
        prop_assert!(delay.as_secs_f64() >= floor - 1e-9, "{delay:?} < {floor}");
    }
}
