//! Every SQL statement, qualified with the configured schema once at start-up. The tables
//! (created and upgraded on connect by `migrate.rs`):
//!
//! ```text
//! schema_version (version)
//! queues        (name PK, ordered, temporary, is_error)
//! subscriptions (message_type, queue) PK            -- fan-out: one row per subscribed queue
//! messages      (queue, seq) PK, id, message_type, partition_key, visible_at, sent_at,
//!               delivery_count, claim, dead_of, fault_reason, dead_lettered_at, envelope
//!               UNIQUE (queue, id)                   -- idempotent re-sends
//!               INDEX (queue, partition_key, seq) WHERE partition_key IS NOT NULL
//! scheduled     (queue, seq) PK, id, message_type, partition_key, visible_at, sent_at,
//!               delivery_count, envelope             -- due later than SCHEDULE_AFTER
//!               UNIQUE (queue, id), INDEX (queue, visible_at),
//!               INDEX (queue, partition_key, seq) WHERE partition_key IS NOT NULL
//! parked        (queue, partition_key) PK           -- keys held behind a dead letter
//! inbox         (message_id, endpoint) PK, processed_at, expires_at
//! sagas         (saga_type, id) PK, version, state jsonb, updated_at
//! ```
//!
//! A message is one row. Its lease is `visible_at` (claiming pushes it into the future and
//! stamps a fresh `claim` token); ack deletes the row; the error queue `<queue>_error` is
//! the same table with `dead_of` = the original queue, so dead-lettering and replay are
//! updates that keep `seq` (and with it per-key order).
//!
//! A message due later than [`SCHEDULE_AFTER`] (sent with a delay, or nacked with one)
//! waits in `scheduled` instead, with the `seq` it was given at send, so a claim never
//! steps over it: a claim costs the same with 10 or 100,000 timers pending. Receivers
//! promote due rows back into `messages` (same `seq`), and an ordered claim also checks
//! `scheduled` for an earlier row of the key, so per-key order holds across the move.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AssertSqlSafe;

/// Messages due later than this from now wait in `scheduled`, out of the claim path.
/// The SQL below spells it `interval '1 second'`; keep them equal.
pub(crate) const SCHEDULE_AFTER: Duration = Duration::from_secs(1);

/// Most rows moved by one promotion.
pub(crate) const PROMOTE_BATCH: i64 = 1000;

/// Inserts messages for queues and topics (fan-out through `subscriptions`) and notifies
/// the queues that got a message visible now. Arrays: destination (NULL = topic), id,
/// type, key, visible_at (NULL = now), sent_at, envelope; `$8` = channel. Rows due later
/// than `SCHEDULE_AFTER` go to `scheduled`; `seq` is drawn in send order for both tables.
/// An id already waiting in the other table of the queue is not inserted again.
const SEND: &str = r#"
WITH d AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[],
                         $5::timestamptz[], $6::timestamptz[], $7::bytea[])
        WITH ORDINALITY AS d(dest, id, message_type, partition_key, visible_at, sent_at, envelope, ord)
), r AS MATERIALIZED (
    SELECT nextval('{s}.message_seq') AS seq, x.*,
           x.visible_at >= now() + interval '1 second' AS later
    FROM (
        SELECT t.queue, d.id, d.message_type, d.partition_key,
               coalesce(d.visible_at, now()) AS visible_at, d.sent_at, d.envelope
        FROM d CROSS JOIN LATERAL (
            SELECT d.dest AS queue WHERE d.dest IS NOT NULL
            UNION ALL
            SELECT s.queue FROM {s}.subscriptions s
            WHERE d.dest IS NULL AND s.message_type = d.message_type
        ) t
        ORDER BY d.ord, t.queue
    ) x
), ins AS (
    INSERT INTO {s}.messages (queue, seq, id, message_type, partition_key, visible_at, sent_at, envelope)
    SELECT r.queue, r.seq, r.id, r.message_type, r.partition_key, r.visible_at, r.sent_at, r.envelope
    FROM r
    WHERE NOT r.later
      AND NOT EXISTS (SELECT 1 FROM {s}.scheduled w WHERE w.queue = r.queue AND w.id = r.id)
    ON CONFLICT (queue, id) DO NOTHING
    RETURNING queue, visible_at
), later AS (
    INSERT INTO {s}.scheduled (queue, seq, id, message_type, partition_key, visible_at, sent_at, envelope)
    SELECT r.queue, r.seq, r.id, r.message_type, r.partition_key, r.visible_at, r.sent_at, r.envelope
    FROM r
    WHERE r.later
      AND NOT EXISTS (SELECT 1 FROM {s}.messages m WHERE m.queue = r.queue AND m.id = r.id)
    ON CONFLICT (queue, id) DO NOTHING
)
SELECT pg_notify($8, q.queue) FROM (SELECT DISTINCT queue FROM ins WHERE visible_at <= now()) q
"#;

/// Moves up to `$2` due rows of queue `$1` from `scheduled` back into `messages` (same
/// `seq`) and notifies channel `$3` if any moved; returns how many moved. A row whose id
/// is in `messages` already (a re-send) is dropped.
const PROMOTE: &str = r#"
WITH due AS (
    DELETE FROM {s}.scheduled w
    WHERE (w.queue, w.seq) IN (
        SELECT queue, seq FROM {s}.scheduled
        WHERE queue = $1 AND visible_at <= now()
        ORDER BY visible_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
    RETURNING w.queue, w.seq, w.id, w.message_type, w.partition_key, w.visible_at, w.sent_at,
              w.delivery_count, w.envelope
), ins AS (
    INSERT INTO {s}.messages (queue, seq, id, message_type, partition_key, visible_at, sent_at,
                              delivery_count, envelope)
    SELECT * FROM due ORDER BY seq
    ON CONFLICT DO NOTHING
    RETURNING 1
), n AS (SELECT count(*) AS n FROM due)
SELECT n.n, (SELECT count(*) FROM (SELECT pg_notify($3, $1) FROM ins LIMIT 1) x)
FROM n
"#;

/// Claims up to `$2` visible rows after `$5` in `seq` order. `$3` lease seconds, `$4` claim.
const CLAIM: &str = r#"
WITH c AS (
    SELECT seq FROM {s}.messages
    WHERE queue = $1 AND seq > $5 AND visible_at <= now()
    ORDER BY seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {s}.messages m
SET visible_at = now() + make_interval(secs => $3), delivery_count = m.delivery_count + 1, claim = $4
FROM c WHERE m.queue = $1 AND m.seq = c.seq
RETURNING m.seq, m.delivery_count, m.envelope
"#;

/// Like [`CLAIM`] on an ordered queue: only the first row of each key (counting rows
/// waiting in `scheduled`), and not if parked.
const CLAIM_ORDERED: &str = r#"
WITH c AS (
    SELECT m.seq FROM {s}.messages m
    WHERE m.queue = $1 AND m.seq > $5 AND m.visible_at <= now()
      AND (m.partition_key IS NULL OR (
          NOT EXISTS (SELECT 1 FROM {s}.messages e
                      WHERE e.queue = m.queue AND e.partition_key = m.partition_key
                        AND e.seq < m.seq)
          AND NOT EXISTS (SELECT 1 FROM {s}.scheduled w
                          WHERE w.queue = m.queue AND w.partition_key = m.partition_key
                            AND w.seq < m.seq)
          AND NOT EXISTS (SELECT 1 FROM {s}.parked p
                          WHERE p.queue = m.queue AND p.partition_key = m.partition_key)))
    ORDER BY m.seq
    LIMIT $2
    FOR UPDATE OF m SKIP LOCKED
)
UPDATE {s}.messages m
SET visible_at = now() + make_interval(secs => $3), delivery_count = m.delivery_count + 1, claim = $4
FROM c WHERE m.queue = $1 AND m.seq = c.seq
RETURNING m.seq, m.delivery_count, m.envelope
"#;

/// Seconds until the next row of `$1` becomes visible (delayed, leased, or waiting in
/// `scheduled`; negative when a scheduled row is due and waits for promotion).
const NEXT_VISIBLE: &str = r#"
SELECT extract(epoch FROM least(
    (SELECT min(visible_at) FROM {s}.messages WHERE queue = $1 AND visible_at > now()),
    (SELECT min(visible_at) FROM {s}.scheduled WHERE queue = $1)) - now())::float8
"#;

/// Batched ack: arrays of queue, seq, claim.
const ACK: &str = r#"
DELETE FROM {s}.messages m
USING unnest($1::text[], $2::bigint[], $3::uuid[]) AS a(queue, seq, claim)
WHERE m.queue = a.queue AND m.seq = a.seq AND m.claim = a.claim
"#;

/// Batched release: visible now, the delivery not counted.
const RELEASE: &str = r#"
UPDATE {s}.messages m
SET visible_at = now(), claim = NULL, delivery_count = greatest(m.delivery_count - 1, 0)
FROM unnest($1::text[], $2::bigint[], $3::uuid[]) AS a(queue, seq, claim)
WHERE m.queue = a.queue AND m.seq = a.seq AND m.claim = a.claim
"#;

/// Batched requeue of deliveries dropped unsettled: visible now, the delivery counted.
const REQUEUE: &str = r#"
UPDATE {s}.messages m
SET visible_at = now(), claim = NULL
FROM unnest($1::text[], $2::bigint[], $3::uuid[]) AS a(queue, seq, claim)
WHERE m.queue = a.queue AND m.seq = a.seq AND m.claim = a.claim
"#;

/// Redeliver after `$4` seconds with the envelope `$5` (NULL = unchanged).
const NACK: &str = r#"
UPDATE {s}.messages
SET visible_at = now() + make_interval(secs => $4), claim = NULL,
    envelope = coalesce($5, envelope)
WHERE queue = $1 AND seq = $2 AND claim = $3
"#;

/// Like [`NACK`] for a delay of at least `SCHEDULE_AFTER`: the row moves to `scheduled`.
const NACK_SCHEDULE: &str = r#"
WITH gone AS (
    DELETE FROM {s}.messages
    WHERE queue = $1 AND seq = $2 AND claim = $3
    RETURNING queue, seq, id, message_type, partition_key, sent_at, delivery_count, envelope
)
INSERT INTO {s}.scheduled (queue, seq, id, message_type, partition_key, visible_at, sent_at,
                           delivery_count, envelope)
SELECT queue, seq, id, message_type, partition_key, now() + make_interval(secs => $4), sent_at,
       delivery_count, coalesce($5, envelope)
FROM gone
"#;

/// Moves a claimed row into its error queue `$4`; parks its key when `$7`.
const DEAD_LETTER: &str = r#"
WITH d AS (
    UPDATE {s}.messages
    SET queue = $4, dead_of = queue, fault_reason = $5, envelope = $6,
        dead_lettered_at = now(), visible_at = now(), claim = NULL
    WHERE queue = $1 AND seq = $2 AND claim = $3
    RETURNING dead_of, partition_key
)
INSERT INTO {s}.parked (queue, partition_key)
SELECT dead_of, partition_key FROM d WHERE $7 AND partition_key IS NOT NULL
ON CONFLICT DO NOTHING
"#;

/// The id and key columns of a claimed row (`$1` queue, `$2` seq, `$3` claim): what is
/// known of a row whose envelope does not decode.
const CLAIMED_META: &str = r#"
SELECT id, partition_key FROM {s}.messages WHERE queue = $1 AND seq = $2 AND claim = $3
"#;

const EXTEND: &str = r#"
UPDATE {s}.messages SET visible_at = now() + make_interval(secs => $4)
WHERE queue = $1 AND seq = $2 AND claim = $3
"#;

/// Dead letters matching a query; `FOR UPDATE` variant used by replay.
const DEAD_LETTERS: &str = r#"
SELECT seq, queue, dead_of, dead_lettered_at, envelope FROM {s}.messages
WHERE dead_of IS NOT NULL
  AND ($1::text IS NULL OR dead_of = $1)
  AND ($2::text IS NULL OR message_type = $2)
  AND ($3::text IS NULL OR fault_reason = $3)
  AND ($4::timestamptz IS NULL OR dead_lettered_at >= $4)
  AND (cardinality($5::uuid[]) = 0 OR id = ANY($5))
ORDER BY dead_lettered_at, seq
LIMIT $6
"#;

/// Puts replayed rows back: arrays of (error queue, seq, target queue, envelope).
const REPLAY: &str = r#"
WITH r AS (
    UPDATE {s}.messages m
    SET queue = a.target, dead_of = NULL, fault_reason = NULL, dead_lettered_at = NULL,
        visible_at = now(), delivery_count = 0, claim = NULL, envelope = a.envelope
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[]) AS a(queue, seq, target, envelope)
    WHERE m.queue = a.queue AND m.seq = a.seq
    RETURNING m.queue
)
SELECT pg_notify($5, q.queue) FROM (SELECT DISTINCT queue FROM r) q
"#;

const PURGE: &str = r#"
DELETE FROM {s}.messages m
USING unnest($1::text[], $2::bigint[]) AS a(queue, seq)
WHERE m.queue = a.queue AND m.seq = a.seq
"#;

const UNPARK: &str = r#"
DELETE FROM {s}.parked p
USING unnest($1::text[], $2::text[]) AS a(queue, partition_key)
WHERE p.queue = a.queue AND p.partition_key = a.partition_key
"#;

const DECLARE_QUEUE: &str = r#"
INSERT INTO {s}.queues (name, ordered, temporary, is_error) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET ordered = {s}.queues.ordered OR excluded.ordered
"#;

/// Deletes queue `$1` and its error queue `$2`: rows of both (waiting ones too), parked
/// keys, subscriptions.
const DELETE_QUEUE: &str = r#"
WITH m AS (DELETE FROM {s}.messages WHERE queue = $1 OR queue = $2),
     w AS (DELETE FROM {s}.scheduled WHERE queue = $1),
     p AS (DELETE FROM {s}.parked WHERE queue = $1),
     sub AS (DELETE FROM {s}.subscriptions WHERE queue = $1)
DELETE FROM {s}.queues WHERE name = $1 OR name = $2
"#;

const DECLARE_SUBSCRIPTION: &str = r#"
INSERT INTO {s}.subscriptions (message_type, queue) VALUES ($1, $2) ON CONFLICT DO NOTHING
"#;

const QUEUES: &str = "SELECT name, ordered FROM {s}.queues WHERE name = ANY($1)";

/// Per queue: ready, in flight, scheduled, oldest age (not in flight), error depth, parked
/// keys. Rows of `scheduled` count as ready once due.
const STATS: &str = r#"
SELECT q.name,
       m.ready + w.ready,
       m.in_flight,
       m.scheduled + w.scheduled,
       extract(epoch FROM now() - least(m.oldest, w.oldest))::float8,
       (SELECT count(*) FROM {s}.messages e WHERE e.queue = q.name || '_error'),
       (SELECT count(*) FROM {s}.parked p WHERE p.queue = q.name)
FROM {s}.queues q
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE visible_at <= now()) AS ready,
           count(*) FILTER (WHERE visible_at > now() AND claim IS NOT NULL) AS in_flight,
           count(*) FILTER (WHERE visible_at > now() AND claim IS NULL) AS scheduled,
           min(sent_at) FILTER (WHERE claim IS NULL OR visible_at <= now()) AS oldest
    FROM {s}.messages WHERE queue = q.name
) m
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE visible_at <= now()) AS ready,
           count(*) FILTER (WHERE visible_at > now()) AS scheduled,
           min(sent_at) AS oldest
    FROM {s}.scheduled WHERE queue = q.name
) w
WHERE NOT q.is_error
ORDER BY q.name
"#;

const INBOX_RECORD: &str = r#"
INSERT INTO {s}.inbox (message_id, endpoint, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT DO NOTHING
"#;

const INBOX_SEEN: &str =
    "SELECT EXISTS (SELECT 1 FROM {s}.inbox WHERE message_id = $1 AND endpoint = $2 AND expires_at > now())";

const INBOX_SWEEP: &str = "DELETE FROM {s}.inbox WHERE expires_at < now()";

/// One statement, schema-qualified: cheap to clone into a query.
#[derive(Debug, Clone)]
pub(crate) struct Stmt(Arc<str>);

impl Stmt {
    /// `template` with `{s}` replaced by the quoted `schema`.
    pub(crate) fn new(template: &str, schema: &str) -> Self {
        Stmt(template.replace("{s}", &format!("\"{schema}\"")).into())
    }

    /// The statement, marked safe: only the validated schema name is spliced in.
    pub(crate) fn sql(&self) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.0.clone())
    }
}

/// Every statement of the crate for one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) send: Stmt,
    pub(crate) claim: Stmt,
    pub(crate) claim_ordered: Stmt,
    pub(crate) promote: Stmt,
    pub(crate) next_visible: Stmt,
    pub(crate) ack: Stmt,
    pub(crate) release: Stmt,
    pub(crate) requeue: Stmt,
    pub(crate) nack: Stmt,
    pub(crate) nack_schedule: Stmt,
    pub(crate) dead_letter: Stmt,
    pub(crate) claimed_meta: Stmt,
    pub(crate) extend: Stmt,
    pub(crate) dead_letters: Stmt,
    pub(crate) dead_letters_lock: Stmt,
    pub(crate) replay: Stmt,
    pub(crate) purge: Stmt,
    pub(crate) unpark: Stmt,
    pub(crate) declare_queue: Stmt,
    pub(crate) declare_subscription: Stmt,
    pub(crate) delete_queue: Stmt,
    pub(crate) queues: Stmt,
    pub(crate) stats: Stmt,
    pub(crate) inbox_record: Stmt,
    pub(crate) inbox_seen: Stmt,
    pub(crate) inbox_sweep: Stmt,
    /// NOTIFY channel of this schema.
    pub(crate) channel: String,
}

impl Sql {
    /// Statements for `schema` (already validated as a plain identifier).
    pub(crate) fn new(schema: &str) -> Self {
        let s = |t: &str| Stmt::new(t, schema);
        Sql {
            send: s(SEND),
            claim: s(CLAIM),
            claim_ordered: s(CLAIM_ORDERED),
            promote: s(PROMOTE),
            next_visible: s(NEXT_VISIBLE),
            ack: s(ACK),
            release: s(RELEASE),
            requeue: s(REQUEUE),
            nack: s(NACK),
            nack_schedule: s(NACK_SCHEDULE),
            dead_letter: s(DEAD_LETTER),
            claimed_meta: s(CLAIMED_META),
            extend: s(EXTEND),
            dead_letters: s(DEAD_LETTERS),
            dead_letters_lock: s(&format!("{DEAD_LETTERS} FOR UPDATE")),
            replay: s(REPLAY),
            purge: s(PURGE),
            unpark: s(UNPARK),
            declare_queue: s(DECLARE_QUEUE),
            declare_subscription: s(DECLARE_SUBSCRIPTION),
            delete_queue: s(DELETE_QUEUE),
            queues: s(QUEUES),
            stats: s(STATS),
            inbox_record: s(INBOX_RECORD),
            inbox_seen: s(INBOX_SEEN),
            inbox_sweep: s(INBOX_SWEEP),
            channel: format!("tidings_{schema}"),
        }
    }
}
