-- OrderFlow business schema. Each service owns its tables (prefix); none reads another's.
PRAGMA journal_mode = WAL;

-- shared plumbing: inbox (dedup per consumer); off the SQLite transport the outbox is
-- tidings_relay_outbox, created by tidings_sqlite::OutboxTable
CREATE TABLE IF NOT EXISTS inbox (
    message_id TEXT NOT NULL,
    consumer   TEXT NOT NULL,
    handled_at INTEGER NOT NULL,
    PRIMARY KEY (message_id, consumer)
) WITHOUT ROWID;

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
CREATE TABLE IF NOT EXISTS api_idempotency (
    key      TEXT PRIMARY KEY,
    order_id TEXT NOT NULL
);

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
