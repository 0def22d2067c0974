//! Queue statistics from stream and consumer info.
//!
//! `ready` = undelivered messages of the queue's consumer(s) (`num_pending`); `in_flight`
//! = `num_ack_pending` (this includes messages waiting out a `-NAK` delay, which
//! JetStream keeps pending on the consumer); `scheduled` = messages in the queue's delay
//! stream (`None` if it has none); `parked_keys` = parked markers (`None` if the queue
//! cannot park); `oldest_age` is the age of the oldest message
//! still in the stream; `error_depth` the message count of the error stream.

use async_nats::jetstream::consumer;
use chrono::Utc;
use futures::TryStreamExt;
use tidings_core::transport::QueueStats;

use crate::error::NatsError;
use crate::topology::is_not_found;
use crate::transport::Shared;

pub(crate) async fn stats(sh: &Shared) -> Result<Vec<QueueStats>, NatsError> {
    let names: Vec<String> = sh
        .js
        .stream_names()
        .try_collect()
        .await
        .map_err(|e| NatsError::request("stream.names", e))?;
    let mut by_queue: std::collections::BTreeMap<String, QueueStats> = Default::default();
    let mut oldest: std::collections::BTreeMap<String, chrono::DateTime<Utc>> = Default::default();
    for stream_name in names {
        let Some(queue) = sh.names.queue_of_stream(&stream_name) else {
            continue;
        };
        let mut stream = match sh.js.get_stream(&stream_name).await {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(NatsError::request(format!("stream.info {stream_name}"), e)),
        };
        let info = stream
            .info()
            .await
            .map_err(|e| NatsError::request(format!("stream.info {stream_name}"), e))?
            .clone();
        let consumers: Vec<consumer::Info> = stream
            .consumers()
            .try_collect()
            .await
            .map_err(|e| NatsError::request(format!("consumer.list {stream_name}"), e))?;
        let (ready, in_flight) = if consumers.is_empty() {
            (info.state.messages, 0)
        } else {
            consumers.iter().fold((0, 0), |(r, f), c| {
                (r + c.num_pending, f + c.num_ack_pending as u64)
            })
        };
        if info.state.messages > 0 {
            let first = info.state.first_timestamp;
            let e = oldest.entry(queue.clone()).or_insert(first);
            *e = (*e).min(first);
        }
        let s = by_queue.entry(queue.clone()).or_insert_with(|| QueueStats {
            queue,
            in_flight: Some(0),
            ..Default::default()
        });
        s.ready += ready;
        s.in_flight = Some(s.in_flight.unwrap_or(0) + in_flight);
    }
    let mut out = Vec::with_capacity(by_queue.len());
    for (queue, mut s) in by_queue {
        s.error_depth = match sh.js.get_stream(sh.names.error_stream(&queue)).await {
            Ok(mut st) => {
                st.info()
                    .await
                    .map_err(|e| NatsError::request("stream.info error stream", e))?
                    .state
                    .messages
            }
            Err(e) if is_not_found(&e) => 0,
            Err(e) => return Err(NatsError::request("stream.info error stream", e)),
        };
        s.parked_keys = sh.parked_keys(&queue).await?;
        s.scheduled = match sh.js.get_stream(sh.names.delay_stream(&queue)).await {
            Ok(mut st) => Some(
                st.info()
                    .await
                    .map_err(|e| NatsError::request("stream.info delay stream", e))?
                    .state
                    .messages,
            ),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(NatsError::request("stream.info delay stream", e)),
        };
        s.oldest_age = oldest
            .get(&queue)
            .and_then(|t| (Utc::now() - *t).to_std().ok());
        out.push(s);
    }
    out.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(out)
}
