//! Dead letters: listed by reading each error stream with direct-by-subject gets (from
//! the first sequence, skipping deleted ones), replayed by publishing back to the queue
//! and then deleting by sequence, purged by deleting by sequence.

use std::sync::Arc;

use futures::TryStreamExt;
use tidings_core::envelope::headers;
use tidings_core::transport::{DeadLetter, DeadLetterQuery, Outgoing};
use tidings_core::Result;

use crate::codec;
use crate::error::NatsError;
use crate::topology::is_not_found;
use crate::transport::Shared;

/// A dead letter and where it is stored.
pub(crate) struct Found {
    pub(crate) dead_letter: DeadLetter,
    stream: String,
    seq: u64,
}

/// The error-queue owners to look in.
async fn queues(sh: &Shared, query: &DeadLetterQuery) -> Result<Vec<String>> {
    if let Some(q) = &query.queue {
        return Ok(vec![q.clone()]);
    }
    let names: Vec<String> = sh
        .js
        .stream_names()
        .try_collect()
        .await
        .map_err(|e| NatsError::request("stream.names", e))?;
    Ok(names
        .iter()
        .filter_map(|s| sh.names.queue_of_stream(s))
        .collect())
}

/// Every matching dead letter, oldest first, at most `query.limit` (0: all).
pub(crate) async fn scan(sh: &Shared, query: &DeadLetterQuery) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    for queue in queues(sh, query).await? {
        let name = sh.names.error_stream(&queue);
        let subject = sh.names.error_subject(&queue);
        let mut stream = match sh.js.get_stream(&name).await {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(NatsError::request(format!("stream.info {name}"), e).into()),
        };
        let state = stream
            .info()
            .await
            .map_err(|e| NatsError::request(format!("stream.info {name}"), e))?
            .state
            .clone();
        if state.messages == 0 {
            continue;
        }
        let mut seq = state.first_sequence;
        while seq <= state.last_sequence {
            let msg = match stream
                .raw_message_builder()
                .sequence(seq)
                .next_by_subject(subject.clone())
                .send()
                .await
            {
                Ok(m) => m,
                Err(e) if is_not_found(&e) => break,
                Err(e) => {
                    return Err(NatsError::request(format!("stream.msg.get {name}"), e).into())
                }
            };
            seq = msg.sequence + 1;
            let envelope = match codec::decode(Some(&msg.headers), msg.payload.clone()) {
                Ok(e) => e,
                Err(e) => codec::foreign(msg.subject.as_str(), msg.payload, &e.to_string()),
            };
            let dl = DeadLetter {
                queue: queue.clone(),
                envelope,
                dead_lettered_at: msg.time,
            };
            if query.matches(&dl) {
                out.push(Found {
                    dead_letter: dl,
                    stream: name.clone(),
                    seq: msg.sequence,
                });
            }
        }
    }
    out.sort_by_key(|f| f.dead_letter.dead_lettered_at);
    if query.limit > 0 {
        out.truncate(query.limit);
    }
    Ok(out)
}

async fn delete(sh: &Shared, f: &Found) -> Result<()> {
    let stream = sh
        .js
        .get_stream_no_info(&f.stream)
        .await
        .map_err(|e| NatsError::request(format!("stream {}", f.stream), e))?;
    match stream.delete_message(f.seq).await {
        Ok(_) => Ok(()),
        // Already gone (a concurrent purge or replay): nothing to do.
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(NatsError::request(format!("stream.msg.delete {}", f.stream), e).into()),
    }
}

/// Unparks the dead letter's key in its original queue: `clear` removes the marker,
/// then (after the dead letter itself is back) the parked messages follow it.
async fn unpark(sh: &Shared, f: &Found, clear: bool) -> Result<()> {
    if let Some(key) = &f.dead_letter.envelope.partition_key {
        if clear {
            sh.clear_park_marker(&f.dead_letter.queue, key).await?;
        } else {
            sh.move_parked(&f.dead_letter.queue, key).await?;
        }
    }
    Ok(())
}

/// Publishes each match back to its queue (or `to`), marked replayed, then deletes it.
pub(crate) async fn replay(
    sh: &Arc<Shared>,
    query: &DeadLetterQuery,
    to: Option<&str>,
) -> Result<u64> {
    if let Some(to) = to {
        if sh.layout(to).await?.is_none() {
            return Err(NatsError::UnknownQueue(to.to_string()).into());
        }
    }
    let found = scan(sh, query).await?;
    let mut n = 0;
    for f in &found {
        let mut env = f.dead_letter.envelope.clone();
        let count: u32 = env
            .header(headers::REPLAYED)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        env.headers
            .insert(headers::REPLAYED.into(), (count + 1).to_string());
        let target = to.unwrap_or(&f.dead_letter.queue);
        // A fresh de-duplication id: the original id is still in the queue's window.
        let msg_id = format!("{}:replay:{}:{}", env.id, f.stream, f.seq);
        let msg = sh.prepare(&Outgoing::to_queue(target, env), &msg_id)?;
        unpark(sh, f, true).await?;
        sh.publish_all(vec![msg]).await?;
        delete(sh, f).await?;
        unpark(sh, f, false).await?;
        n += 1;
    }
    Ok(n)
}

/// Deletes every match.
pub(crate) async fn purge(sh: &Shared, query: &DeadLetterQuery) -> Result<u64> {
    let found = scan(sh, query).await?;
    for f in &found {
        delete(sh, f).await?;
        unpark(sh, f, true).await?;
        unpark(sh, f, false).await?;
    }
    Ok(found.len() as u64)
}
