//! Tests of the circuit breaker, under paused time.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::{service_fn, Layer, Service, ServiceExt};

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

#[derive(Clone, Copy, Debug)]
enum Mode {
    Succeed,
    Transient,
    Permanent,
}

/// A handler whose result is set by the test; it counts its calls, and waits for a permit
/// of `gate` first when one is set.
#[derive(Clone)]
struct Script {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicU32>,
    gate: Arc<Mutex<Option<Arc<Semaphore>>>>,
}

impl Script {
    fn new(mode: Mode) -> Self {
        Script {
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::new(AtomicU32::new(0)),
            gate: Arc::new(Mutex::new(None)),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<Consume, Response = (), Error = HandlerError, Future = impl Send>
           + Clone
           + Send
           + Sync {
        let script = self.clone();
        service_fn(move |_req: Consume| {
            let script = script.clone();
            async move {
                script.calls.fetch_add(1, Ordering::SeqCst);
                let gate = script.gate.lock().unwrap().clone();
                if let Some(gate) = gate {
                    gate.acquire().await.unwrap().forget();
                }
                match *script.mode.lock().unwrap() {
                    Mode::Succeed => Ok(()),
                    Mode::Transient => Err(HandlerError::transient("db down")),
                    Mode::Permanent => Err(HandlerError::permanent("bad input")),
                }
            }
        })
    }
}

fn config() -> BreakerConfig {
    BreakerConfig::new()
        .failure_threshold(3)
        .failure_ratio(0.5)
        .min_throughput(3)
        .window(Duration::from_secs(60))
        .open_duration(Duration::from_secs(10))
        .probe_defer(Duration::from_millis(500))
}

/// One delivery; a hang (e.g. a second call stuck behind the probe's gate) fails the test
/// once the paused clock runs past a minute.
async fn call(svc: &mut BoxPipeline) -> Result<(), HandlerError> {
    let delivery = async { svc.ready().await?.call(request()).await };
    tokio::time::timeout(Duration::from_secs(60), delivery)
        .await
        .expect("the delivery hung")
}

/// Lets spawned tasks run until the handler has been called `n` times.
async fn started(script: &Script, n: u32) {
    for _ in 0..1000 {
        if script.calls() >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(script.calls(), n, "the probe did not reach the handler");
}

/// A breaker that has just opened after three transient failures.
async fn opened(script: &Script) -> (CircuitBreaker<BoxPipeline>, BoxPipeline) {
    let breaker = CircuitBreakerLayer::new(config()).layer(BoxPipeline::new(script.service()));
    let mut svc = BoxPipeline::new(breaker.clone());
    for _ in 0..3 {
        let err = call(&mut svc).await.unwrap_err();
        assert_eq!(err.message(), "db down");
        assert_eq!(err.deferral(), None);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    (breaker, svc)
}

#[tokio::test(start_paused = true)]
async fn opens_after_the_threshold_and_defers_without_calling_the_handler() {
    let script = Script::new(Mode::Transient);
    let (_breaker, mut svc) = opened(&script).await;
    assert_eq!(script.calls(), 3);

    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(err.deferral(), Some(Duration::from_secs(10)));
    assert!(!err.is_permanent());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(err.deferral(), Some(Duration::from_secs(6)));
    assert_eq!(script.calls(), 3, "the handler is not called while open");
}

#[tokio::test(start_paused = true)]
async fn one_probe_when_half_open_and_its_success_closes() {
    let script = Script::new(Mode::Transient);
    let (breaker, svc) = opened(&script).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);

    script.set(Mode::Succeed);
    let gate = Arc::new(Semaphore::new(0));
    *script.gate.lock().unwrap() = Some(gate.clone());
    let mut probe_svc = svc.clone();
    let probe = tokio::spawn(async move { call(&mut probe_svc).await });
    started(&script, 4).await;

    let mut other = svc.clone();
    let err = call(&mut other).await.unwrap_err();
    assert_eq!(err.deferral(), Some(Duration::from_millis(500)));
    assert_eq!(script.calls(), 4, "only the probe reached the handler");

    gate.add_permits(1);
    probe.await.unwrap().unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed);
    *script.gate.lock().unwrap() = None;
    call(&mut other).await.unwrap();
    assert_eq!(script.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens() {
    let script = Script::new(Mode::Transient);
    let (breaker, mut svc) = opened(&script).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(err.message(), "db down", "the probe reached the handler");
    assert_eq!(script.calls(), 4);
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = call(&mut svc).await.unwrap_err();
    assert_eq!(err.deferral(), Some(Duration::from_secs(10)));
    assert_eq!(script.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_lets_the_next_delivery_probe() {
    let script = Script::new(Mode::Transient);
    let (breaker, svc) = opened(&script).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let gate = Arc::new(Semaphore::new(0));
    *script.gate.lock().unwrap() = Some(gate);
    let mut probe_svc = svc.clone();
    let probe = tokio::spawn(async move { call(&mut probe_svc).await });
    started(&script, 4).await;
    probe.abort();
    assert!(probe.await.unwrap_err().is_cancelled());
    *script.gate.lock().unwrap() = None;
    script.set(Mode::Succeed);
    let mut next = svc.clone();
    call(&mut next).await.unwrap();
    assert_eq!(script.calls(), 5);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_do_not_open_the_circuit() {
    let script = Script::new(Mode::Permanent);
    let breaker = CircuitBreakerLayer::new(config()).layer(BoxPipeline::new(script.service()));
    let mut svc = BoxPipeline::new(breaker.clone());
    for _ in 0..20 {
        assert!(call(&mut svc).await.unwrap_err().is_permanent());
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(script.calls(), 20);
}

#[tokio::test(start_paused = true)]
async fn the_failure_ratio_and_the_window_must_both_be_met() {
    let script = Script::new(Mode::Succeed);
    let breaker = CircuitBreakerLayer::new(config()).layer(BoxPipeline::new(script.service()));
    let mut svc = BoxPipeline::new(breaker.clone());
    // 4 failures among 10 attempts: below the 50% ratio.
    for _ in 0..6 {
        call(&mut svc).await.unwrap();
    }
    script.set(Mode::Transient);
    for _ in 0..4 {
        call(&mut svc).await.unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);

    // Once they have left the window, 2 failures are below the threshold of 3...
    tokio::time::sleep(Duration::from_secs(61)).await;
    for _ in 0..2 {
        call(&mut svc).await.unwrap_err();
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    // ... and the third opens it.
    call(&mut svc).await.unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open);
}

/// breaker → retry → timeout → catch panic → handler, boxed as the endpoint will do.
#[tokio::test(start_paused = true)]
async fn the_whole_stack_composes() {
    use crate::pipeline::catch_panic::CatchPanicLayer;
    use crate::pipeline::retry::{Intervals, RetryLayer};
    use crate::pipeline::timeout::TimeoutLayer;
    use crate::FaultReason;

    let attempts = Arc::new(Mutex::new(Vec::new()));
    let seen = attempts.clone();
    let handler = service_fn(move |req: Consume| {
        let attempts = attempts.clone();
        async move {
            let attempt = req.ctx.attempt();
            attempts.lock().unwrap().push(attempt);
            match (req.ctx.delivery_count(), attempt) {
                (1, 1) => futures::future::pending::<()>().await,
                (1, _) => {}
                _ => panic!("bug in handler"),
            }
            Ok::<(), HandlerError>(())
        }
    });
    let breaker = tower::ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(config()))
        .layer(RetryLayer::new(Intervals::fixed(3, Duration::from_secs(1))))
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .layer(CatchPanicLayer::new())
        .service(handler);
    let svc = BoxPipeline::new(breaker.clone());

    let start = tokio::time::Instant::now();
    svc.clone().oneshot(request()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(6),
        "5 s timeout + 1 s wait"
    );
    assert_eq!(*seen.lock().unwrap(), vec![1, 2]);

    let producer = Producer::new(Arc::new(MemoryTransport::new()), HashMap::new(), None);
    let redelivered = Consume::new(ConsumeContext::new(
        Envelope::new("t", 1, "{}"),
        producer,
        "endpoint",
        2,
    ));
    let err = svc.oneshot(redelivered).await.unwrap_err();
    assert_eq!(err.reason(), FaultReason::Panicked);
    assert_eq!(err.message(), "handler panicked: bug in handler");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1, 2, 1],
        "a panic is permanent: no retry"
    );
    assert_eq!(breaker.state(), BreakerState::Closed);
}
