//! Names and declarations: endpoint queues, error queues, one fanout exchange per event
//! type, and the delay infrastructure.
//!
//! # Delays without a plugin
//!
//! Delayed redelivery and scheduled messages use [`DELAY_LEVELS`] fixed-TTL levels (the
//! scheme NServiceBus uses on RabbitMQ): level `L` is a topic exchange and a queue whose
//! messages all live `2^L × DELAY_UNIT` and then dead-letter to level `L-1`'s exchange
//! (level 0 to `tidings_delay.deliver`; classic levels are named `tidings_delay_classic.*`). A delayed message is published to the top level
//! with a routing key of the delay's bits, most significant first, then the destination:
//! `0.1.…1.q.<queue>` or `…t.<event type>`. Each level either parks it in its queue (bit
//! set) or passes it down at once (bit clear), so the total wait is the delay rounded up to
//! [`DELAY_UNIT`]. Every queue holds messages of one TTL, so expiry order is FIFO order: no
//! head-of-line blocking, unlike per-message expiration on one queue. Dead-lettering keeps
//! headers and the routing key; `tidings_delay.deliver` routes by the destination part
//! (exact word count, so `a` never matches `x.a`). On quorum queues dead-lettering is
//! at-least-once (`x-dead-letter-strategy`), so a delayed message is not lost in transit.

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use std::time::Duration;

use tidings_core::transport::{error_queue_name, QueueSpec};

use crate::config::{QueueType, RabbitMqConfig};
use crate::error::RabbitMqError;

/// Resolution of delays.
pub const DELAY_UNIT: Duration = Duration::from_millis(10);
/// Number of delay levels: the longest single pass is `(2^29 - 1) × 10 ms` ≈ 62 days;
/// longer delays take several passes (the receiver re-delays early arrivals).
pub const DELAY_LEVELS: u32 = 29;
/// Prefix of the delay infrastructure's names. Quorum and classic levels have different
/// names, so processes configured differently can share a virtual host.
fn delay_prefix(queue_type: QueueType) -> &'static str {
    match queue_type {
        QueueType::Quorum => "tidings_delay",
        QueueType::Classic => "tidings_delay_classic",
    }
}

/// Whether `name` is one of the delay levels (`tidings_delay.<n>`, `tidings_delay_classic.<n>`).
pub(crate) fn is_delay_queue(name: &str) -> bool {
    [QueueType::Quorum, QueueType::Classic].iter().any(|t| {
        name.strip_prefix(delay_prefix(*t))
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|level| !level.is_empty() && level.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Exchange the last delay level dead-letters into.
pub(crate) fn delay_deliver(queue_type: QueueType) -> String {
    format!("{}.deliver", delay_prefix(queue_type))
}

/// Exchange of delay level `level`; also its queue's name.
pub(crate) fn delay_level(queue_type: QueueType, level: u32) -> String {
    format!("{}.{level}", delay_prefix(queue_type))
}

/// Fanout exchange an event type is published to.
pub(crate) fn type_exchange(message_type: &str) -> String {
    format!("tidings.{message_type}")
}

/// Converts a name to an AMQP short string (255 bytes max).
pub(crate) fn short(name: &str) -> Result<ShortString, RabbitMqError> {
    ShortString::try_new(name).map_err(|_| RabbitMqError::NameTooLong(name.to_string()))
}

/// Where a delayed message goes when its time comes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DelayTarget<'a> {
    /// One queue.
    Queue(&'a str),
    /// Every queue subscribed to an event type.
    Topic(&'a str),
}

fn target_words(target: DelayTarget<'_>) -> String {
    match target {
        DelayTarget::Queue(q) => format!("q.{q}"),
        DelayTarget::Topic(t) => format!("t.{t}"),
    }
}

/// Delay in units, rounded up, capped to what one pass through the levels can hold.
pub(crate) fn delay_units(delay: Duration) -> u64 {
    let unit = DELAY_UNIT.as_millis().max(1);
    let units = delay.as_millis().div_ceil(unit);
    u64::try_from(units)
        .unwrap_or(u64::MAX)
        .min((1u64 << DELAY_LEVELS) - 1)
}

/// Routing key for a delay of `units` to `target`: the bits, most significant first.
pub(crate) fn delay_routing_key(units: u64, target: DelayTarget<'_>) -> String {
    let mut key = String::with_capacity(DELAY_LEVELS as usize * 2 + 64);
    for level in (0..DELAY_LEVELS).rev() {
        key.push(if units >> level & 1 == 1 { '1' } else { '0' });
        key.push('.');
    }
    key.push_str(&target_words(target));
    key
}

/// Binding on `tidings_delay.deliver` that matches exactly `target`.
fn deliver_binding(target: DelayTarget<'_>) -> String {
    format!(
        "{}{}",
        "*.".repeat(DELAY_LEVELS as usize),
        target_words(target)
    )
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(k), v);
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_string()))
}

fn queue_args(queue_type: QueueType) -> Vec<(&'static str, AMQPValue)> {
    vec![("x-queue-type", text(queue_type.as_str()))]
}

/// Declares the delay levels and the deliver exchange.
pub(crate) async fn declare_delay_infrastructure(
    ch: &Channel,
    config: &RabbitMqConfig,
) -> Result<(), RabbitMqError> {
    let err = |op, e: lapin::Error| RabbitMqError::amqp(op, &e, |s| config.redact(s));
    let deliver = delay_deliver(config.queue_type);
    ch.exchange_declare(
        deliver.as_str().into(),
        ExchangeKind::Topic,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| err("exchange.declare", e))?;
    for level in 0..DELAY_LEVELS {
        let name = delay_level(config.queue_type, level);
        let next = if level == 0 {
            deliver.clone()
        } else {
            delay_level(config.queue_type, level - 1)
        };
        let ttl = (DELAY_UNIT.as_millis() as i64) << level;
        let mut args = queue_args(config.queue_type);
        args.push(("x-message-ttl", AMQPValue::LongLongInt(ttl)));
        args.push(("x-dead-letter-exchange", text(&next)));
        if config.queue_type == QueueType::Quorum {
            args.push(("x-dead-letter-strategy", text("at-least-once")));
            args.push(("x-overflow", text("reject-publish")));
        }
        ch.exchange_declare(
            name.as_str().into(),
            ExchangeKind::Topic,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| err("exchange.declare", e))?;
        ch.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::durable(),
            table(args),
        )
        .await
        .map_err(|e| err("queue.declare", e))?;
        let prefix = "*.".repeat((DELAY_LEVELS - 1 - level) as usize);
        ch.queue_bind(
            name.as_str().into(),
            name.as_str().into(),
            format!("{prefix}1.#").into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| err("queue.bind", e))?;
        ch.exchange_bind(
            next.as_str().into(),
            name.as_str().into(),
            format!("{prefix}0.#").into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| err("exchange.bind", e))?;
    }
    Ok(())
}

/// Declares an event type's fanout exchange and routes delayed publishes of it.
pub(crate) async fn declare_type_exchange(
    ch: &Channel,
    config: &RabbitMqConfig,
    message_type: &str,
) -> Result<(), RabbitMqError> {
    let err = |op, e: lapin::Error| RabbitMqError::amqp(op, &e, |s| config.redact(s));
    let exchange = short(&type_exchange(message_type))?;
    let binding = short(&deliver_binding(DelayTarget::Topic(message_type)))?;
    ch.exchange_declare(
        exchange.clone(),
        ExchangeKind::Fanout,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| err("exchange.declare", e))?;
    ch.exchange_bind(
        exchange,
        delay_deliver(config.queue_type).as_str().into(),
        binding,
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| err("exchange.bind", e))
}

/// Declares an endpoint queue, its error queue, its subscriptions and its delay route.
pub(crate) async fn declare_queue(
    ch: &Channel,
    config: &RabbitMqConfig,
    spec: &QueueSpec,
) -> Result<(), RabbitMqError> {
    let err = |op, e: lapin::Error| RabbitMqError::amqp(op, &e, |s| config.redact(s));
    let name = short(&spec.name)?;
    let error_name = short(&error_queue_name(&spec.name))?;
    let binding = short(&deliver_binding(DelayTarget::Queue(&spec.name)))?;
    let (queue_type, mut args) = if spec.temporary {
        // Reply queues: classic, removed after an hour without use.
        let mut a = queue_args(QueueType::Classic);
        a.push(("x-expires", AMQPValue::LongLongInt(3_600_000)));
        (QueueType::Classic, a)
    } else {
        (config.queue_type, queue_args(config.queue_type))
    };
    if spec.ordered {
        args.push(("x-single-active-consumer", AMQPValue::Boolean(true)));
    }
    ch.queue_declare(name.clone(), QueueDeclareOptions::durable(), table(args))
        .await
        .map_err(|e| err("queue.declare", e))?;
    ch.queue_declare(
        error_name,
        QueueDeclareOptions::durable(),
        table(queue_args(queue_type)),
    )
    .await
    .map_err(|e| err("queue.declare", e))?;
    ch.queue_bind(
        name.clone(),
        delay_deliver(config.queue_type).as_str().into(),
        binding,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| err("queue.bind", e))?;
    for t in &spec.subscriptions {
        declare_type_exchange(ch, config, t).await?;
        ch.queue_bind(
            name.clone(),
            short(&type_exchange(t))?,
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| err("queue.bind", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_key_spells_the_delay_in_bits() {
        assert_eq!(delay_units(Duration::from_millis(25)), 3);
        assert_eq!(delay_units(Duration::ZERO), 0);
        let key = delay_routing_key(5, DelayTarget::Queue("orders"));
        let words: Vec<&str> = key.split('.').collect();
        assert_eq!(words.len(), DELAY_LEVELS as usize + 2);
        assert_eq!(
            &words[DELAY_LEVELS as usize - 3..],
            &["1", "0", "1", "q", "orders"]
        );
        assert_eq!(
            delay_units(Duration::from_secs(1 << 40)),
            (1 << DELAY_LEVELS) - 1
        );
    }
}
