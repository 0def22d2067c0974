//! Parking the key of a dead-lettered message on an ordered queue
//! (`park_on_dead_letter`), so per-key order survives a poison message.
//!
//! Stream `<P>_PK_<q>` holds, per parked key, a marker (`<prefix>.pk.<q>.m.<key>`) and the
//! key's later messages (`<prefix>.pk.<q>.k.<key>`), in arrival order:
//! - dead-lettering on a parking receiver publishes the marker before `+TERM`, so the
//!   key's next message (held back by the partition's `max_ack_pending = 1` until then)
//!   already sees it;
//! - a parking receiver looks the marker up (direct get, one request per keyed message)
//!   and moves a parked key's message into the park stream (publish, then `+ACK`);
//! - replaying or purging a dead letter unparks its key: the parked messages go back to
//!   the queue in order, after the replayed one, then the marker is removed and the
//!   park subject scanned once more for a message parked meanwhile.

use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::{self, RetentionPolicy};
use async_nats::jetstream::Message;
use tidings_core::transport::Outgoing;
use tidings_core::{Envelope, Result};

use crate::codec;
use crate::error::NatsError;
use crate::topology::is_not_found;
use crate::transport::Shared;

impl Shared {
    pub(crate) async fn ensure_park_stream(
        &self,
        queue: &str,
    ) -> std::result::Result<(), NatsError> {
        self.ensure_stream(stream::Config {
            name: self.names.park_stream(queue),
            subjects: vec![self.names.park_subjects(queue)],
            retention: RetentionPolicy::Limits,
            storage: self.storage(),
            allow_direct: true,
            description: Some(format!("tidings parked keys of `{queue}`")),
            ..Default::default()
        })
        .await
        .map(|_| ())
    }

    /// Marks `key` of `queue` parked.
    pub(crate) async fn park_key(&self, queue: &str, key: &str) -> Result<()> {
        let env = Envelope::new("tidings.parked-key", 1, key.as_bytes().to_vec());
        let msg = self.prepare_to(
            self.names.park_marker(queue, key),
            Some(format!("{queue} (park stream)")),
            &env,
            &env.id.to_string(),
        )?;
        self.publish_all(vec![msg]).await
    }

    /// Whether `key` of `queue` is parked.
    pub(crate) async fn is_parked(&self, queue: &str, key: &str) -> Result<bool> {
        let name = self.names.park_stream(queue);
        let stream = self
            .js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| NatsError::request(format!("stream {name}"), e))?;
        match stream
            .get_last_raw_message_by_subject(&self.names.park_marker(queue, key))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(NatsError::request(format!("park lookup in {name}"), e).into()),
        }
    }

    /// Moves a delivered message of a parked key into the park stream.
    pub(crate) async fn park_message(
        &self,
        queue: &str,
        key: &str,
        msg: &Message,
        env: &Envelope,
    ) -> Result<()> {
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let stream = msg.info().map(|i| i.stream.to_string()).unwrap_or_default();
        let out = self.prepare_to(
            self.names.parked_subject(queue, key),
            Some(format!("{queue} (park stream)")),
            env,
            &format!("{}:park:{stream}:{seq}", env.id),
        )?;
        self.publish_all(vec![out]).await?;
        msg.double_ack_with(AckKind::Ack)
            .await
            .map_err(|e| NatsError::Settle(e.to_string()).into())
    }

    async fn park_stream_of(&self, queue: &str) -> Result<Option<stream::Stream>> {
        let name = self.names.park_stream(queue);
        match self.js.get_stream(&name).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(NatsError::request(format!("stream {name}"), e).into()),
        }
    }

    /// First half of unparking: removes the marker, so the key's messages flow again.
    pub(crate) async fn clear_park_marker(&self, queue: &str, key: &str) -> Result<()> {
        if let Some(stream) = self.park_stream_of(queue).await? {
            stream
                .purge()
                .filter(self.names.park_marker(queue, key))
                .await
                .map_err(|e| NatsError::request("purge park marker", e))?;
        }
        Ok(())
    }

    /// Second half: the key's parked messages go back to the queue, in order. Returns how
    /// many moved.
    pub(crate) async fn move_parked(&self, queue: &str, key: &str) -> Result<u64> {
        let Some(stream) = self.park_stream_of(queue).await? else {
            return Ok(0);
        };
        let subject = self.names.parked_subject(queue, key);
        let mut seq = 1;
        let mut n = 0;
        loop {
            let m = match stream
                .raw_message_builder()
                .sequence(seq)
                .next_by_subject(subject.clone())
                .send()
                .await
            {
                Ok(m) => m,
                Err(e) if is_not_found(&e) => return Ok(n),
                Err(e) => return Err(NatsError::request("park scan", e).into()),
            };
            seq = m.sequence + 1;
            let env = codec::decode(Some(&m.headers), m.payload.clone())?;
            let out = self.prepare(
                &Outgoing::to_queue(queue, env.clone()),
                &format!("{}:unpark:{}", env.id, m.sequence),
            )?;
            self.publish_all(vec![out]).await?;
            match stream.delete_message(m.sequence).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(NatsError::request("park delete", e).into()),
            }
            n += 1;
        }
    }

    /// How many keys of `queue` are parked; `None` if the queue cannot park.
    pub(crate) async fn parked_keys(
        &self,
        queue: &str,
    ) -> std::result::Result<Option<u64>, NatsError> {
        let name = self.names.park_stream(queue);
        let stream = match self.js.get_stream(&name).await {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(NatsError::request(format!("stream {name}"), e)),
        };
        let mut subjects = stream
            .info_with_subjects(self.names.park_markers(queue))
            .await
            .map_err(|e| NatsError::request(format!("stream.info {name}"), e))?;
        let mut n = 0;
        while let Some(s) = futures::StreamExt::next(&mut subjects).await {
            s.map_err(|e| NatsError::request(format!("stream.info {name}"), e))?;
            n += 1;
        }
        Ok(Some(n))
    }
}
