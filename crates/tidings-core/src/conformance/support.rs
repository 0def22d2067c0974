//! Helpers the conformance cases share: connecting, declaring (and remembering what was
//! declared, to delete it after the case), building envelopes, bounded waits, stats and
//! dead-letter polling, and consumer loops. Every helper panics with a message that names
//! what it was doing, so a failing case says why.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{unique, TransportFactory};
use crate::transport::{
    DeadLetter, DeadLetterQuery, Delivery, Outgoing, QueueSpec, QueueStats, ReceiveOptions,
    Receiver, Topology, Transport,
};
use crate::{Envelope, Fault, FaultReason, Result};

/// How long a case waits for something that should happen (a delivery, a stats change).
pub(crate) const WAIT: Duration = Duration::from_secs(15);
/// How long a case watches for something that must not happen.
pub(crate) const QUIET: Duration = Duration::from_millis(1500);
/// Header carrying a test sequence number.
pub(crate) const SEQ: &str = "conformance-seq";

/// Whole milliseconds: transports may store timestamps no finer than that.
pub(crate) fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// Unwraps `r` or panics naming `what`.
pub(crate) fn must<T>(r: Result<T>, what: impl Display) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e} ({e:?})"),
    }
}

/// A transport from the factory.
pub(crate) async fn connect(factory: &impl TransportFactory) -> Arc<dyn Transport> {
    must(factory.create().await, "TransportFactory::create")
}

/// A unique queue name (`cf_<what>_<8 hex>`).
pub(crate) fn queue_name(what: &str) -> String {
    unique(&format!("cf_{what}"))
}

/// A unique message type (`conformance.<what>_<8 hex>`).
pub(crate) fn type_name(what: &str) -> String {
    unique(&format!("conformance.{what}"))
}

/// A plain queue spec.
pub(crate) fn spec(name: &str) -> QueueSpec {
    QueueSpec {
        name: name.to_string(),
        ..QueueSpec::default()
    }
}

/// Names of the queues a case declared (shared with [`super::run_case`], which deletes
/// them when the case ends).
pub(crate) type Declared = Arc<Mutex<Vec<String>>>;

tokio::task_local! {
    /// The queues the running case declared.
    pub(crate) static DECLARED: Declared;
}

/// Notes that the running case declared (or tried to declare) `names`.
fn remember(names: &[String]) {
    let _ = DECLARED.try_with(|d| {
        let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
        for n in names {
            if !d.contains(n) {
                d.push(n.clone());
            }
        }
    });
}

/// How long deleting one queue after a case may take.
const DELETE_WAIT: Duration = Duration::from_secs(30);

/// Deletes the queues a case declared, on a fresh connection. Returns what failed.
pub(crate) async fn delete_declared(
    factory: &impl TransportFactory,
    declared: &Declared,
) -> Vec<String> {
    let names = declared.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if names.is_empty() {
        return Vec::new();
    }
    let t = match factory.create().await {
        Ok(t) => t,
        Err(e) => return vec![format!("connecting to delete {names:?}: {e}")],
    };
    let mut failed = Vec::new();
    for q in &names {
        match tokio::time::timeout(DELETE_WAIT, t.delete_queue(q)).await {
            Ok(Ok(())) => {}
            // Handles of this factory share the transport the case closed (memory): it
            // is gone with everything in it.
            Ok(Err(crate::Error::Shutdown)) => break,
            Ok(Err(e)) => failed.push(format!("delete_queue({q}): {e} ({e:?})")),
            Err(_) => failed.push(format!(
                "delete_queue({q}): no answer within {DELETE_WAIT:?}"
            )),
        }
    }
    failed
}

/// Declares these queues (and remembers them, to delete them after the case).
pub(crate) async fn declare(t: &dyn Transport, queues: Vec<QueueSpec>) {
    let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    remember(&names);
    must(
        t.declare(&Topology { queues }).await,
        format!("declare({names:?})"),
    );
}

/// Declares one fresh plain queue and returns its name.
pub(crate) async fn fresh_queue(t: &dyn Transport, what: &str) -> String {
    let name = queue_name(what);
    declare(t, vec![spec(&name)]).await;
    name
}

/// An envelope of `message_type` carrying `seq` in a header and in its JSON body
/// (`sent_at` in whole milliseconds, so it compares equal after a round trip).
pub(crate) fn message(message_type: &str, seq: u64) -> Envelope {
    let mut e = Envelope::new(message_type, 1, format!("{{\"seq\":{seq}}}"));
    e.sent_at = millis(e.sent_at);
    e.headers.insert(SEQ.into(), seq.to_string());
    e
}

/// The sequence number of a message made by [`message`].
pub(crate) fn seq(e: &Envelope) -> u64 {
    match e.header(SEQ).and_then(|s| s.parse().ok()) {
        Some(n) => n,
        None => panic!(
            "delivered message {} has no `{SEQ}` header: headers = {:?}",
            e.id, e.headers
        ),
    }
}

/// Sends `messages`, panicking on failure.
pub(crate) async fn send(t: &dyn Transport, messages: Vec<Outgoing>) {
    let n = messages.len();
    must(t.send(messages).await, format!("send({n} messages)"));
}

/// Sends one envelope to `queue`.
pub(crate) async fn send_to(t: &dyn Transport, queue: &str, e: Envelope) {
    send(t, vec![Outgoing::to_queue(queue, e)]).await;
}

/// Receive options with this prefetch and lease.
pub(crate) fn options(prefetch: usize, lease: Duration) -> ReceiveOptions {
    ReceiveOptions {
        prefetch,
        lease,
        ..ReceiveOptions::default()
    }
}

/// Opens a receiver on `queue`.
pub(crate) async fn open(
    t: &dyn Transport,
    queue: &str,
    options: ReceiveOptions,
) -> Box<dyn Receiver> {
    must(
        t.receive(queue, options.clone()).await,
        format!("receive({queue}, {options:?})"),
    )
}

/// The next delivery within `wait`; panics on timeout, error or a closed receiver.
pub(crate) async fn recv_within(
    rx: &mut dyn Receiver,
    wait: Duration,
    what: impl Display,
) -> Delivery {
    match tokio::time::timeout(wait, rx.recv()).await {
        Ok(Ok(Some(d))) => d,
        Ok(Ok(None)) => panic!("waiting for {what}: the receiver ended (recv returned None)"),
        Ok(Err(e)) => panic!("waiting for {what}: recv failed: {e} ({e:?})"),
        Err(_) => panic!("waiting for {what}: nothing delivered within {wait:?}"),
    }
}

/// The next delivery within [`WAIT`].
pub(crate) async fn recv(rx: &mut dyn Receiver, what: impl Display) -> Delivery {
    recv_within(rx, WAIT, what).await
}

/// Panics if anything is delivered within `wait`. (Cancels the pending `recv` after
/// `wait`; the suite does this only where it expects nothing more.)
pub(crate) async fn expect_nothing(rx: &mut dyn Receiver, wait: Duration, why: impl Display) {
    match tokio::time::timeout(wait, rx.recv()).await {
        Err(_) => {}
        Ok(Ok(None)) => panic!("{why}: the receiver ended (recv returned None)"),
        Ok(Err(e)) => panic!("{why}: recv failed: {e} ({e:?})"),
        Ok(Ok(Some(d))) => panic!(
            "{why}: but got {:?} (seq {:?}, headers {:?})",
            d,
            d.envelope.header(SEQ),
            d.envelope.headers
        ),
    }
}

/// Acknowledges `d`.
pub(crate) async fn ack(d: Delivery, what: impl Display) {
    must(d.ack().await, format!("ack of {what}"));
}

/// Dead-letters `d` with fault headers for `reason`; returns the envelope as dead-lettered.
pub(crate) async fn dead_letter(d: Delivery, reason: FaultReason, error: &str) -> Envelope {
    let mut env = d.envelope.clone();
    Fault::new(reason, error, &d.queue).apply(&mut env);
    let id = env.id;
    must(
        d.settle.dead_letter(env.clone()).await,
        format!("dead_letter of {id}"),
    );
    env
}

/// Closes a receiver.
pub(crate) async fn close(rx: &mut dyn Receiver, what: impl Display) {
    must(rx.close().await, format!("close of {what}"));
}

/// The stats of `queue` (panics if the transport does not list it).
pub(crate) async fn queue_stats(t: &dyn Transport, queue: &str) -> QueueStats {
    let all = must(t.stats().await, "stats()");
    match all.into_iter().find(|s| s.queue == queue) {
        Some(s) => s,
        None => panic!("stats() does not list declared queue `{queue}`"),
    }
}

/// Polls the stats of `queue` until `ok` holds (within [`WAIT`]); returns them.
pub(crate) async fn stats_until(
    t: &dyn Transport,
    queue: &str,
    what: &str,
    ok: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = queue_stats(t, queue).await;
        if ok(&s) {
            return s;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("stats of `{queue}`: expected {what} within {WAIT:?}, last seen {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A query for the dead letters of one endpoint queue.
pub(crate) fn of_queue(queue: &str) -> DeadLetterQuery {
    DeadLetterQuery {
        queue: Some(queue.to_string()),
        ..DeadLetterQuery::default()
    }
}

/// Lists dead letters matching `query`.
pub(crate) async fn dead_letters(t: &dyn Transport, query: &DeadLetterQuery) -> Vec<DeadLetter> {
    must(
        t.dead_letters(query).await,
        format!("dead_letters({query:?})"),
    )
}

/// Polls `dead_letters(query)` until it lists exactly `n` (within [`WAIT`]).
pub(crate) async fn dead_letters_until(
    t: &dyn Transport,
    query: &DeadLetterQuery,
    n: usize,
) -> Vec<DeadLetter> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = dead_letters(t, query).await;
        if found.len() == n {
            return found;
        }
        if tokio::time::Instant::now() >= deadline {
            let ids: Vec<_> = found.iter().map(|d| d.envelope.id).collect();
            panic!(
                "dead_letters({query:?}): expected {n} within {WAIT:?}, found {}: {ids:?}",
                found.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Best-effort cleanup: purges the dead letters of `queues`.
pub(crate) async fn cleanup(t: &dyn Transport, queues: &[&str]) {
    for q in queues {
        let _ = t.purge(&of_queue(q)).await;
    }
}

/// What consumer tasks report: a value per handled delivery, or a contract violation.
pub(crate) type Reports<T> = mpsc::UnboundedSender<std::result::Result<T, String>>;

/// Runs `rx` in a task until `stop` is cancelled, calling `handle` for each delivery
/// (one at a time; `handle` may spawn to handle several at once). A failing or ending
/// `recv` is reported as a violation.
pub(crate) fn spawn_consumer<T, F, Fut>(
    mut rx: Box<dyn Receiver>,
    name: String,
    stop: CancellationToken,
    reports: Reports<T>,
    mut handle: F,
) -> JoinHandle<()>
where
    T: Send + 'static,
    F: FnMut(Delivery) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                r = rx.recv() => match r {
                    Ok(Some(d)) => handle(d).await,
                    Ok(None) => {
                        let _ = reports.send(Err(format!("{name}: recv returned None while open")));
                        break;
                    }
                    Err(e) => {
                        let _ = reports.send(Err(format!("{name}: recv failed: {e} ({e:?})")));
                        break;
                    }
                },
            }
        }
        let _ = rx.close().await;
    })
}

/// Collects `n` reports within `wait`, panicking on the first violation.
pub(crate) async fn collect<T>(
    reports: &mut mpsc::UnboundedReceiver<std::result::Result<T, String>>,
    n: usize,
    wait: Duration,
    what: &str,
) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(Ok(v))) => got.push(v),
            Ok(Some(Err(violation))) => panic!("{what}: {violation}"),
            Ok(None) => panic!("{what}: every consumer stopped after {} of {n}", got.len()),
            Err(_) => panic!("{what}: only {} of {n} handled within {wait:?}", got.len()),
        }
    }
    got
}

/// Stops consumer tasks and waits for them, re-raising a panic from one of them.
pub(crate) async fn stop_all(stop: &CancellationToken, tasks: Vec<JoinHandle<()>>) {
    stop.cancel();
    for t in tasks {
        if let Err(e) = t.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}
