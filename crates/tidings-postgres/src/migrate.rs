//! Creating and upgrading a schema's tables, under an advisory lock so that concurrent
//! connects do not race. The version lives in `schema_version`; a schema without that
//! table but with `messages` is version 1 (before versioning). A schema written by a newer
//! build is refused with a message saying so.
//!
//! Version 2 added `scheduled`: messages due later than
//! [`SCHEDULE_AFTER`](crate::schema::SCHEDULE_AFTER) wait there, out of the claim path,
//! until a receiver promotes them. Upgrading from 1 moves the waiting rows of `messages`
//! (not claimed, not dead letters) into it.

use sqlx::{PgPool, Row};

use crate::error::PgError;
use crate::schema::Stmt;

/// The schema version this build writes.
pub(crate) const VERSION: i32 = 2;

/// Creates everything (idempotent); `{s}` is the quoted schema.
const DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.queues (
    name text PRIMARY KEY,
    ordered boolean NOT NULL DEFAULT false,
    temporary boolean NOT NULL DEFAULT false,
    is_error boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS {s}.subscriptions (
    message_type text NOT NULL,
    queue text NOT NULL,
    PRIMARY KEY (message_type, queue)
);
CREATE SEQUENCE IF NOT EXISTS {s}.message_seq;
CREATE TABLE IF NOT EXISTS {s}.messages (
    queue text NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('{s}.message_seq'),
    id uuid NOT NULL,
    message_type text NOT NULL,
    partition_key text,
    visible_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz NOT NULL,
    delivery_count integer NOT NULL DEFAULT 0,
    claim uuid,
    dead_of text,
    fault_reason text,
    dead_lettered_at timestamptz,
    envelope bytea NOT NULL,
    PRIMARY KEY (queue, seq)
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_queue_id ON {s}.messages (queue, id);
CREATE INDEX IF NOT EXISTS messages_key ON {s}.messages (queue, partition_key, seq)
    WHERE partition_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.scheduled (
    queue text NOT NULL,
    seq bigint NOT NULL,
    id uuid NOT NULL,
    message_type text NOT NULL,
    partition_key text,
    visible_at timestamptz NOT NULL,
    sent_at timestamptz NOT NULL,
    delivery_count integer NOT NULL DEFAULT 0,
    envelope bytea NOT NULL,
    PRIMARY KEY (queue, seq)
) WITH (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
CREATE UNIQUE INDEX IF NOT EXISTS scheduled_queue_id ON {s}.scheduled (queue, id);
CREATE INDEX IF NOT EXISTS scheduled_due ON {s}.scheduled (queue, visible_at);
CREATE INDEX IF NOT EXISTS scheduled_key ON {s}.scheduled (queue, partition_key, seq)
    WHERE partition_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.parked (
    queue text NOT NULL,
    partition_key text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, partition_key)
);
CREATE TABLE IF NOT EXISTS {s}.inbox (
    message_id uuid NOT NULL,
    endpoint text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, endpoint)
);
CREATE INDEX IF NOT EXISTS inbox_expires ON {s}.inbox (expires_at);
CREATE TABLE IF NOT EXISTS {s}.sagas (
    saga_type text NOT NULL,
    id text NOT NULL,
    version bigint NOT NULL,
    state jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_type, id)
);
"#;

/// Version 1 → 2: rows waiting for a later time (sent scheduled, or nacked with a delay)
/// leave the claim path. Claimed rows and dead letters stay.
const UPGRADE_1_TO_2: &str = r#"
WITH moved AS (
    DELETE FROM {s}.messages
    WHERE claim IS NULL AND dead_of IS NULL AND visible_at >= now() + interval '1 second'
    RETURNING queue, seq, id, message_type, partition_key, visible_at, sent_at,
              delivery_count, envelope
)
INSERT INTO {s}.scheduled (queue, seq, id, message_type, partition_key, visible_at, sent_at,
                           delivery_count, envelope)
SELECT * FROM moved
"#;

const SET_VERSION: &str = r#"
INSERT INTO {s}.schema_version (one, version) VALUES (true, $1)
ON CONFLICT (one) DO UPDATE SET version = excluded.version
"#;

/// Creates or upgrades `schema` to [`VERSION`]; refuses a schema of a newer version.
pub(crate) async fn migrate(pool: &PgPool, schema: &str) -> Result<(), PgError> {
    let stmt = |t: &str| Stmt::new(t, schema);
    let mut tx = pool.begin().await.map_err(PgError::db("migrate"))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tidings-migrate:' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(PgError::db("migrate"))?;
    let exists = |table: &str| format!("\"{schema}\".{table}");
    let row = sqlx::query("SELECT to_regclass($1)::text, to_regclass($2)::text")
        .bind(exists("schema_version"))
        .bind(exists("messages"))
        .fetch_one(&mut *tx)
        .await
        .map_err(PgError::db("migrate"))?;
    let col = |i| {
        row.try_get::<Option<String>, _>(i)
            .map_err(PgError::db("migrate"))
    };
    let (has_version, has_messages) = (col(0)?.is_some(), col(1)?.is_some());
    let found: Option<i32> = if has_version {
        sqlx::query_scalar(stmt("SELECT max(version) FROM {s}.schema_version").sql())
            .fetch_one(&mut *tx)
            .await
            .map_err(PgError::db("migrate"))?
    } else {
        None
    };
    let from = match (found, has_messages) {
        (Some(v), _) => v,
        (None, true) => 1,
        (None, false) => 0,
    };
    if from > VERSION {
        return Err(PgError::Schema(format!(
            "schema `{schema}` is at version {from}, written by a newer tidings-postgres; \
             this build knows versions up to {VERSION}: upgrade this process (or use another schema)"
        )));
    }
    if from == VERSION {
        // Up to date: no DDL. (A role that does not own the tables — least privilege, see
        // `permissions` — could not run it anyway.) `CREATE INDEX IF NOT EXISTS` takes a SHARE lock on its table
        // before it finds the index, so re-running the DDL while other processes write the
        // queue tables deadlocks (seen restarting one OrderFlow worker among 13 running).
        return tx.commit().await.map_err(PgError::db("migrate"));
    }
    sqlx::raw_sql(stmt(DDL).sql())
        .execute(&mut *tx)
        .await
        .map_err(PgError::db("migrate"))?;
    if from == 1 {
        let moved = sqlx::query(stmt(UPGRADE_1_TO_2).sql())
            .execute(&mut *tx)
            .await
            .map_err(PgError::db("migrate"))?
            .rows_affected();
        tracing::info!(
            schema,
            moved,
            "tidings-postgres: schema upgraded to version 2 (scheduled messages table)"
        );
    }
    if from != VERSION {
        sqlx::query(stmt(SET_VERSION).sql())
            .bind(VERSION)
            .execute(&mut *tx)
            .await
            .map_err(PgError::db("migrate"))?;
    }
    tx.commit().await.map_err(PgError::db("migrate"))
}
