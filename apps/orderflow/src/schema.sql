-- OrderFlow business schema. Each service owns its tables (prefix); none reads another's.
PRAGMA journal_mode = WAL;

-- shared plumbing: the inbox is the framework's `tidings_inbox` (the SQLite transport's
-- table, or tidings_sqlite::inbox::create_table off it); off the SQLite transport the
-- outbox is tidings_relay_outbox, created by tidings_sqlite::OutboxTable. A data dir of an
-- older OrderFlow (its own `inbox` table) is migrated by db::migrate_inbox.

-- orders API
CREATE TABLE IF NOT EXISTS api_catalog (
    product_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_orders (
    order_id       TEXT PRIMARY KEY,
    customer_id    TEXT NOT NULL,
    total_cents    INTEGER NOT NULL,
    body           TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    placed_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS api_orders_placed ON api_orders (placed_at);
-- Idempotency-Key → order, with the request's SHA-256 fingerprint (same key, different
-- order: 422) and when it was stored (microseconds; keys expire after a window).
CREATE TABLE IF NOT EXISTS api_idempotency_keys (
    key          TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL,
    request_hash BLOB,
    created_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS api_idempotency_keys_created ON api_idempotency_keys (created_at);
-- Keys of the earlier table (no fingerprint, no time) move over once, dated by their
-- order; the old table is then dropped. On a fresh database this moves nothing.
CREATE TABLE IF NOT EXISTS api_idempotency (key TEXT PRIMARY KEY, order_id TEXT NOT NULL);
INSERT OR IGNORE INTO api_idempotency_keys (key, order_id, request_hash, created_at)
    SELECT k.key, k.order_id, NULL, o.placed_at
    FROM api_idempotency k JOIN api_orders o ON o.order_id = k.order_id;
DROP TABLE api_idempotency;

-- inventory
CREATE TABLE IF NOT EXISTS inv_stock (
    product_id TEXT PRIMARY KEY,
    initial    INTEGER NOT NULL,
    available  INTEGER NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS inv_reservations (
    order_id   TEXT NOT NULL,
    product_id TEXT NOT NULL,
    quantity   INTEGER NOT NULL,
    released   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, product_id)
);

-- payments (payments) and the simulated gateway's ledger (gw_ledger: "the bank's side")
CREATE TABLE IF NOT EXISTS pay_payments (
    order_id     TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gw_ledger (
    intent       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    PRIMARY KEY (intent, kind)
);

-- shipping
CREATE TABLE IF NOT EXISTS ship_shipments (
    order_id TEXT PRIMARY KEY,
    tracking TEXT NOT NULL,
    ship_to  TEXT NOT NULL
);

-- notifications
CREATE TABLE IF NOT EXISTS notif_sent (
    order_id TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    channel  TEXT NOT NULL
);

-- order saga: the framework's saga table (tidings_saga_instances) and the view
-- saga_orders over it, created by services::saga::prepare

-- read model (fed by events)
CREATE TABLE IF NOT EXISTS view_orders (
    order_id     TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    rank         INTEGER NOT NULL,
    reason       TEXT,
    placed_at    INTEGER,
    reserved_at  INTEGER,
    paid_at      INTEGER,
    shipped_at   INTEGER,
    final_at     INTEGER
);

-- analytics
CREATE TABLE IF NOT EXISTS stats_outcomes (
    outcome TEXT PRIMARY KEY,
    orders  INTEGER NOT NULL,
    cents   INTEGER NOT NULL
);
