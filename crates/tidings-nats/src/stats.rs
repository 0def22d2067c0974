//! Queue statistics from stream and consumer info.
//!
//! `ready` = undelivered messages of the queue's consumer(s) (`num_pending`); `in_flight`
//! = `num_ack_pending` (this includes messages waiting out a `-NAK` delay and scheduled
//! messages found early, which JetStream keeps pending on the consumer); `scheduled`
//! and `parked_keys` are unknown (`None`); `oldest_age` is the age of the oldest message
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
    let mut out = Vec::new();
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
        let error_depth = match sh.js.get_stream(sh.names.error_stream(&queue)).await {
            Ok(mut s) => s
                .info()
                .await
                .map_err(|e| NatsError::request("stream.info error stream", e))?
                .state
                .messages,
            Err(e) if is_not_found(&e) => 0,
            Err(e) => return Err(NatsError::request("stream.info error stream", e)),
        };
        let oldest_age = (info.state.messages > 0)
            .then(|| (Utc::now() - info.state.first_timestamp).to_std().ok())
            .flatten();
        out.push(QueueStats {
            queue,
            ready,
            in_flight: Some(in_flight),
            scheduled: None,
            oldest_age,
            error_depth,
            parked_keys: None,
        });
    }
    out.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(out)
}
