//! Queue statistics, deleting queues, and error-queue management over plain AMQP.
//!
//! AMQP has no way to browse a queue, so `dead_letters`, `replay` and `purge` take the
//! error queue's messages with `basic.get` on the transport's admin channel (unacked), act
//! on the matching ones, and give the rest back (`basic.nack(requeue)`). One channel, used
//! by one operation at a time, so a later `basic.get` is ordered after the give-back even
//! on quorum queues (where settlements are asynchronous Raft commands). This is **not atomic**:
//! while it runs, those messages are invisible to other readers; a replayed message is
//! acked in the error queue only after its copy was confirmed in the target queue, so a
//! crash in between leaves a duplicate, never a loss.
//!
//! AMQP cannot list queues: the endpoint queues (for `stats`, and for the dead-letter
//! operations without a queue filter) are those the management HTTP API lists (every
//! endpoint of the vhost, see [`management`](crate::management)) plus those declared
//! through this transport instance; without the management API, only the latter.
//! Ready and error counts come from passive `queue.declare` (exact); in-flight from the
//! management API's `messages_unacknowledged` (sampled every 5 s by the broker, `None`
//! without it); scheduled, oldest age and parked keys are unknown (`None`).

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::Channel;

use tidings_core::envelope::headers;
use tidings_core::transport::{error_queue_name, DeadLetter, DeadLetterQuery, QueueStats};
use tidings_core::{Error, Result};

use crate::codec::{self, Extra};
use crate::connection::Connector;
use crate::error::is_not_found;
use crate::management;
use crate::publisher::{publish_all, Publish};
use crate::topology;

/// Ready messages in `queue`; `Err(UnknownQueue)` if it does not exist.
pub(crate) async fn message_count(conn: &Connector, queue: &str) -> Result<u64> {
    let mut slot = None;
    let r = count_on(conn, &mut slot, queue).await;
    if let Some(ch) = slot {
        let _ = ch.close(200, "OK".into()).await;
    }
    r
}

/// [`message_count`] on the channel in `slot` (opened when empty; emptied when the
/// broker closes it, as it does on 404).
async fn count_on(conn: &Connector, slot: &mut Option<Channel>, queue: &str) -> Result<u64> {
    let ch = match slot.as_ref().filter(|c| c.status().connected()) {
        Some(c) => c.clone(),
        None => {
            let (c, _) = conn.channel().await?;
            *slot = Some(c.clone());
            c
        }
    };
    let opts = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let r = ch
        .queue_declare(topology::short(queue)?, opts, FieldTable::default())
        .await;
    match r {
        Ok(q) => Ok(u64::from(q.message_count())),
        Err(e) => {
            *slot = None;
            if is_not_found(&e) {
                Err(Error::UnknownQueue(queue.to_string()))
            } else {
                Err(conn.err("queue.declare", &e).into())
            }
        }
    }
}

/// The endpoint queues to report, with their unacknowledged count when known: every one
/// of the vhost if the management API answers, plus those declared through this
/// transport.
async fn endpoints(conn: &Connector) -> BTreeMap<String, Option<u64>> {
    let mut out = BTreeMap::new();
    if let Some(m) = &conn.management {
        match m.queues().await {
            Ok(listed) => out = management::endpoints(&listed),
            Err(e) => conn.management_failed(&e),
        }
    }
    for q in conn.declared_queues() {
        out.entry(q).or_insert(None);
    }
    out
}

/// Deletes an endpoint queue and its error queue (`queue.delete`, which RabbitMQ answers
/// with OK for a missing queue too). Their bindings — subscriptions, the delay route —
/// go with them; the shared type exchanges and delay levels stay.
pub(crate) async fn delete_queue(conn: &Connector, queue: &str) -> Result<()> {
    let names = [
        topology::short(queue)?,
        topology::short(&error_queue_name(queue))?,
    ];
    let (mut ch, _) = conn.channel().await?;
    for name in names {
        match ch
            .queue_delete(name.clone(), QueueDeleteOptions::default())
            .await
        {
            Ok(_) => {}
            // Older brokers answer 404 (and close the channel): already gone.
            Err(e) if is_not_found(&e) => ch = conn.channel().await?.0,
            Err(e) => {
                let _ = ch.close(200, "OK".into()).await;
                return Err(conn.err("queue.delete", &e).into());
            }
        }
    }
    let _ = ch.close(200, "OK".into()).await;
    Ok(())
}

/// Stats of every endpoint queue (see the module docs; one deleted meanwhile is left out).
pub(crate) async fn stats(conn: &Connector) -> Result<Vec<QueueStats>> {
    let mut out = Vec::new();
    let mut slot = None;
    let r = async {
        for (q, in_flight) in endpoints(conn).await {
            let ready = match count_on(conn, &mut slot, &q).await {
                Ok(n) => n,
                Err(Error::UnknownQueue(_)) => continue,
                Err(e) => return Err(e),
            };
            let error_depth = match count_on(conn, &mut slot, &error_queue_name(&q)).await {
                Ok(n) => n,
                Err(Error::UnknownQueue(_)) => 0,
                Err(e) => return Err(e),
            };
            out.push(stat(q, ready, in_flight, error_depth));
        }
        Ok(())
    }
    .await;
    if let Some(ch) = slot {
        let _ = ch.close(200, "OK".into()).await;
    }
    r.map(|()| out)
}

fn stat(queue: String, ready: u64, in_flight: Option<u64>, error_depth: u64) -> QueueStats {
    QueueStats {
        queue,
        ready,
        in_flight,
        scheduled: None,
        oldest_age: None,
        error_depth,
        parked_keys: None,
    }
}

async fn endpoint_queues(conn: &Connector, query: &DeadLetterQuery) -> Vec<String> {
    match &query.queue {
        Some(q) => vec![q.clone()],
        None => endpoints(conn).await.into_keys().collect(),
    }
}

/// What to do with the matching dead letters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action<'a> {
    List,
    Replay(Option<&'a str>),
    Purge,
}

/// Takes every message of one error queue; handles the matching ones per `action`.
async fn sweep(
    conn: &Connector,
    ch: &Channel,
    queue: &str,
    query: &DeadLetterQuery,
    action: Action<'_>,
    found: &mut Vec<DeadLetter>,
) -> Result<()> {
    let error_queue = topology::short(&error_queue_name(queue))?;
    let mut seen = HashSet::new();
    let mut matched = Vec::new();
    let mut others = Vec::new();
    loop {
        if query.limit > 0 && found.len() + matched.len() >= query.limit {
            break;
        }
        let got = ch
            .basic_get(error_queue.clone(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    Error::UnknownQueue(error_queue.to_string())
                } else {
                    conn.err("basic.get", &e).into()
                }
            })?;
        let Some(msg) = got else { break };
        let d = msg.delivery;
        let decoded = codec::decode(&d.properties, &d.data);
        // Given-back messages come round again only after this channel closes, but be safe.
        if !seen.insert(decoded.envelope.id) {
            break;
        }
        let dl = DeadLetter {
            queue: queue.to_string(),
            dead_lettered_at: decoded.dead_lettered_at.unwrap_or_else(|| {
                d.properties
                    .timestamp()
                    .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
                    .unwrap_or_else(Utc::now)
            }),
            envelope: decoded.envelope,
        };
        if query.matches(&dl) {
            matched.push((dl, d.acker));
        } else {
            others.push(d.acker);
        }
    }
    let requeue = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    for acker in &others {
        acker
            .nack(requeue)
            .await
            .map_err(|e| conn.err("basic.nack", &e))?;
    }
    match action {
        Action::List => {
            for (_, acker) in &matched {
                acker
                    .nack(requeue)
                    .await
                    .map_err(|e| conn.err("basic.nack", &e))?;
            }
        }
        Action::Purge => {
            for (_, acker) in &matched {
                acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| conn.err("basic.ack", &e))?;
            }
        }
        Action::Replay(to) => {
            let mut publishes = Vec::with_capacity(matched.len());
            for (dl, _) in &matched {
                let mut env = dl.envelope.clone();
                let n: u32 = env
                    .header(headers::REPLAYED)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                env.headers
                    .insert(headers::REPLAYED.into(), (n + 1).to_string());
                publishes.push(Publish::to_queue(
                    to.unwrap_or(queue),
                    &env,
                    &Extra::default(),
                )?);
            }
            publish_all(conn, publishes).await?;
            for (_, acker) in &matched {
                acker
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| conn.err("basic.ack", &e))?;
            }
        }
    }
    found.extend(matched.into_iter().map(|(dl, _)| dl));
    Ok(())
}

/// The admin channel, shared by the dead-letter operations of one transport.
pub(crate) type AdminChannel = tokio::sync::Mutex<Option<Channel>>;

async fn run(
    conn: &Connector,
    admin: &AdminChannel,
    query: &DeadLetterQuery,
    action: Action<'_>,
) -> Result<Vec<DeadLetter>> {
    if let Action::Replay(Some(to)) = action {
        message_count(conn, to).await?;
    }
    let mut slot = admin.lock().await;
    let mut found = Vec::new();
    for queue in endpoint_queues(conn, query).await {
        let ch = match slot.as_ref().filter(|c| c.status().connected()) {
            Some(c) => c.clone(),
            None => {
                let (c, _) = conn.channel().await?;
                *slot = Some(c.clone());
                c
            }
        };
        let r = sweep(conn, &ch, &queue, query, action, &mut found).await;
        if r.is_err() {
            // The channel may be closed by the broker (404) or hold messages: start afresh;
            // closing it gives back whatever it took.
            let _ = ch.close(200, "OK".into()).await;
            *slot = None;
        }
        match r {
            Ok(()) => {}
            Err(Error::UnknownQueue(_)) if query.queue.is_none() => {}
            Err(e) => return Err(e),
        }
    }
    found.sort_by_key(|d| d.dead_lettered_at);
    Ok(found)
}

/// Lists matching dead letters, oldest first.
pub(crate) async fn dead_letters(
    conn: &Connector,
    admin: &AdminChannel,
    query: &DeadLetterQuery,
) -> Result<Vec<DeadLetter>> {
    run(conn, admin, query, Action::List).await
}

/// Moves matching dead letters back (marked replayed); returns how many.
pub(crate) async fn replay(
    conn: &Connector,
    admin: &AdminChannel,
    query: &DeadLetterQuery,
    to: Option<&str>,
) -> Result<u64> {
    Ok(run(conn, admin, query, Action::Replay(to)).await?.len() as u64)
}

/// Deletes matching dead letters; returns how many.
pub(crate) async fn purge(
    conn: &Connector,
    admin: &AdminChannel,
    query: &DeadLetterQuery,
) -> Result<u64> {
    Ok(run(conn, admin, query, Action::Purge).await?.len() as u64)
}
