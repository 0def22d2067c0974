-- OrderFlow business schema on PostgreSQL: one schema per service ({B} = the transport's
-- schema, or the business database URL's `schema=`), so no service's tables share a schema
-- with another's. The same tables as schema.sql (INTEGER there is BIGINT here). Applied at
-- start under an advisory lock (many processes start at once).
CREATE SCHEMA IF NOT EXISTS {B}_api;
CREATE SCHEMA IF NOT EXISTS {B}_inventory;
CREATE SCHEMA IF NOT EXISTS {B}_payments;
CREATE SCHEMA IF NOT EXISTS {B}_gateway;
CREATE SCHEMA IF NOT EXISTS {B}_shipping;
CREATE SCHEMA IF NOT EXISTS {B}_notifications;
CREATE SCHEMA IF NOT EXISTS {B}_saga;
CREATE SCHEMA IF NOT EXISTS {B}_views;

CREATE TABLE IF NOT EXISTS {B}_api.api_catalog (
    product_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    price_cents BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {B}_api.api_orders (
    order_id       TEXT PRIMARY KEY,
    customer_id    TEXT NOT NULL,
    total_cents    BIGINT NOT NULL,
    body           TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    placed_at      BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_orders_placed ON {B}_api.api_orders (placed_at);
CREATE TABLE IF NOT EXISTS {B}_api.api_idempotency_keys (
    key          TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL,
    request_hash BYTEA,
    created_at   BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_idempotency_keys_created ON {B}_api.api_idempotency_keys (created_at);

CREATE TABLE IF NOT EXISTS {B}_inventory.inv_stock (
    product_id TEXT PRIMARY KEY,
    initial    BIGINT NOT NULL,
    available  BIGINT NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS {B}_inventory.inv_reservations (
    order_id   TEXT NOT NULL,
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL,
    released   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE IF NOT EXISTS {B}_payments.pay_payments (
    order_id     TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {B}_gateway.gw_ledger (
    intent       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    amount_cents BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (intent, kind)
);

CREATE TABLE IF NOT EXISTS {B}_shipping.ship_shipments (
    order_id TEXT PRIMARY KEY,
    tracking TEXT NOT NULL,
    ship_to  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS {B}_notifications.notif_sent (
    order_id TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    channel  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS {B}_views.view_orders (
    order_id     TEXT PRIMARY KEY,
    status       TEXT NOT NULL,
    rank         BIGINT NOT NULL,
    reason       TEXT,
    placed_at    BIGINT,
    reserved_at  BIGINT,
    paid_at      BIGINT,
    shipped_at   BIGINT,
    final_at     BIGINT
);
CREATE TABLE IF NOT EXISTS {B}_views.stats_outcomes (
    outcome TEXT PRIMARY KEY,
    orders  BIGINT NOT NULL,
    cents   BIGINT NOT NULL
);
-- the saga table ({B}_saga.tidings_saga_instances) and its view saga_orders are created by
-- services::saga::prepare
