//! One SQL text for both business databases: statements are written once in the common
//! subset of SQLite and PostgreSQL (`?` / `?N` placeholders, `ON CONFLICT`, `CAST(.. AS
//! BIGINT)` around sums) and run on either.
//!
//! - On SQLite they run as written.
//! - On PostgreSQL [`PgNames`] rewrites them once per statement (cached): `?` becomes `$n`,
//!   `?N` becomes `$N`, and each business table name becomes `schema.table` (not where it
//!   qualifies a column: `view_orders.rank` stays), the schema of
//!   the service that owns the table (database per service as schema per service; see
//!   [`crate::db`]).
//!
//! [`Tx`] is a write transaction, [`Reader`] the read side; both offer [`Tx::exec`],
//! [`Tx::all`], [`Tx::opt`], [`Tx::one`] with arguments built by [`args!`](crate::args).
//! Rows decode into tuples whose types decode on both (`String`, `i64`, `Option<..>`,
//! `Vec<u8>`): an `INTEGER` column on SQLite is a `BIGINT` on PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{
    AssertSqlSafe, FromRow, PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool,
    Transaction,
};

/// One bound value.
#[derive(Debug, Clone)]
pub enum Arg {
    /// An integer (`INTEGER` / `BIGINT`).
    Int(i64),
    /// Text.
    Text(String),
    /// Text or NULL.
    OptText(Option<String>),
    /// Bytes (`BLOB` / `BYTEA`).
    Bytes(Vec<u8>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Self {
        Arg::Bytes(v.to_vec())
    }
}

/// `args![a, b, ..]`: the arguments of a statement, in placeholder order.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$($crate::sql::Arg::from($a)),*] };
}

/// Rows that decode on both databases (tuples of `String`, `i64`, `Option<..>`, ..).
pub trait FromBoth:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> FromBoth for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// Which PostgreSQL schema holds each business table, and the rewritten statements.
#[derive(Debug)]
pub struct PgNames {
    base: String,
    tables: HashMap<&'static str, String>,
    cache: Mutex<HashMap<(usize, usize), Arc<str>>>,
}

/// Business tables by owning service (schema suffix).
pub const OWNERS: &[(&str, &[&str])] = &[
    (
        "api",
        &["api_catalog", "api_orders", "api_idempotency_keys"],
    ),
    ("inventory", &["inv_stock", "inv_reservations"]),
    ("payments", &["pay_payments"]),
    ("gateway", &["gw_ledger"]),
    ("shipping", &["ship_shipments"]),
    ("notifications", &["notif_sent"]),
    ("saga", &["tidings_saga_instances", "saga_orders"]),
    ("views", &["view_orders", "stats_outcomes"]),
];

impl PgNames {
    /// Tables in schemas `<base>_<service>` (e.g. `tidings_inventory`).
    pub fn new(base: &str) -> Self {
        let mut tables = HashMap::new();
        for (service, names) in OWNERS {
            for t in *names {
                tables.insert(*t, format!("{base}_{service}.{t}"));
            }
        }
        PgNames {
            base: base.to_string(),
            tables,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The schema of `service` (an [`OWNERS`] suffix).
    pub fn schema(&self, service: &str) -> String {
        format!("{}_{service}", self.base)
    }

    /// The base name (the transport's schema).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `sql` for PostgreSQL (cached by the address of the static text).
    pub fn translate(&self, sql: &'static str) -> Arc<str> {
        let key = (sql.as_ptr() as usize, sql.len());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| Arc::from(self.rewrite(sql)))
            .clone()
    }

    /// Placeholders to `$n`, business table names qualified by their schema.
    pub fn rewrite(&self, sql: &str) -> String {
        let b = sql.as_bytes();
        let mut out = String::with_capacity(sql.len() + 64);
        let (mut i, mut n) = (0, 0);
        while i < b.len() {
            let c = b[i];
            if c == b'\'' {
                // a string literal, copied as is ('' is an escaped quote)
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push_str(&sql[start..i]);
            } else if c == b'?' {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                out.push('$');
                if start == i {
                    n += 1;
                    out.push_str(&n.to_string());
                } else {
                    out.push_str(&sql[start..i]);
                }
            } else if c.is_ascii_alphabetic() || c == b'_' {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &sql[start..i];
                // `x.name` (a column) or `name.col` (a reference to a table already named)
                let dotted = (start > 0 && b[start - 1] == b'.') || b.get(i) == Some(&b'.');
                match self.tables.get(word) {
                    Some(full) if !dotted => out.push_str(full),
                    _ => out.push_str(word),
                }
            } else {
                let ch = sql[i..].chars().next().unwrap_or(' ');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
        out
    }
}

type SqliteQuery = sqlx::query::Query<'static, Sqlite, SqliteArguments>;
type PgQuery = sqlx::query::Query<'static, Postgres, PgArguments>;

fn sqlite_query(sql: &'static str, args: Vec<Arg>) -> SqliteQuery {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
        };
    }
    q
}

fn pg_query(names: &PgNames, sql: &'static str, args: Vec<Arg>) -> PgQuery {
    let mut q = sqlx::query(AssertSqlSafe(names.translate(sql)));
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
        };
    }
    q
}

/// A write transaction on either database.
pub enum Tx<'c> {
    /// A SQLite connection inside a transaction (or the transport writer's savepoint).
    Sqlite(&'c mut SqliteConnection),
    /// A PostgreSQL transaction, and where the tables are.
    Pg(&'c mut Transaction<'static, Postgres>, Arc<PgNames>),
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tx::Sqlite(_) => "Tx::Sqlite",
            Tx::Pg(..) => "Tx::Pg",
        })
    }
}

/// The read side of either database (outside any write transaction).
#[derive(Debug, Clone)]
pub enum Reader {
    /// SQLite readers (WAL: beside the writer).
    Sqlite(SqlitePool),
    /// A PostgreSQL pool, and where the tables are.
    Pg(PgPool, Arc<PgNames>),
}

macro_rules! dispatch {
    ($pick:expr, $sql:expr, $args:expr, |$q:ident, $e:ident| $body:expr) => {
        match $pick {
            Target::Sqlite($e) => {
                let $q = sqlite_query($sql, $args);
                $body
            }
            Target::SqlitePool($e) => {
                let $q = sqlite_query($sql, $args);
                $body
            }
            Target::Pg($e, names) => {
                let $q = pg_query(names, $sql, $args);
                $body
            }
            Target::PgPool($e, names) => {
                let $q = pg_query(names, $sql, $args);
                $body
            }
        }
    };
}

enum Target<'a> {
    Sqlite(&'a mut SqliteConnection),
    SqlitePool(&'a SqlitePool),
    Pg(&'a mut PgConnection, &'a PgNames),
    PgPool(&'a PgPool, &'a PgNames),
}

impl Target<'_> {
    async fn exec(self, sql: &'static str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        dispatch!(self, sql, args, |q, e| Ok(q
            .execute(e)
            .await?
            .rows_affected()))
    }

    async fn all<T: FromBoth>(
        self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Vec<T>, sqlx::Error> {
        dispatch!(self, sql, args, |q, e| q
            .fetch_all(e)
            .await?
            .iter()
            .map(T::from_row)
            .collect())
    }

    async fn opt<T: FromBoth>(
        self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<T>, sqlx::Error> {
        dispatch!(self, sql, args, |q, e| q
            .fetch_optional(e)
            .await?
            .as_ref()
            .map(T::from_row)
            .transpose())
    }
}

macro_rules! api {
    ($($m:ident)?) => {
        /// Runs a statement; returns the rows it changed.
        pub async fn exec(&$($m)? self, sql: &'static str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
            self.target().exec(sql, args).await
        }

        /// Every row.
        pub async fn all<T: FromBoth>(
            &$($m)? self,
            sql: &'static str,
            args: Vec<Arg>,
        ) -> Result<Vec<T>, sqlx::Error> {
            self.target().all(sql, args).await
        }

        /// The first row, if any.
        pub async fn opt<T: FromBoth>(
            &$($m)? self,
            sql: &'static str,
            args: Vec<Arg>,
        ) -> Result<Option<T>, sqlx::Error> {
            self.target().opt(sql, args).await
        }

        /// The first row (`RowNotFound` without one).
        pub async fn one<T: FromBoth>(
            &$($m)? self,
            sql: &'static str,
            args: Vec<Arg>,
        ) -> Result<T, sqlx::Error> {
            self.target()
                .opt(sql, args)
                .await?
                .ok_or(sqlx::Error::RowNotFound)
        }
    };
}

impl Tx<'_> {
    fn target(&mut self) -> Target<'_> {
        match self {
            Tx::Sqlite(c) => Target::Sqlite(c),
            Tx::Pg(t, names) => Target::Pg(t, names),
        }
    }

    api!(mut);

    /// Serializes transactions on `key` until this one ends. On SQLite there is one writer
    /// (every write transaction is serialized already): nothing to do. On PostgreSQL a
    /// transaction-level advisory lock — for read-then-write decisions that two messages
    /// about the same thing (a charge and a cancel of one payment intent) must not make at
    /// once in two processes.
    pub async fn lock(&mut self, key: &str) -> Result<(), sqlx::Error> {
        if let Tx::Pg(t, _) = self {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(&mut ***t)
                .await?;
        }
        Ok(())
    }

    /// Whether this is PostgreSQL.
    pub fn is_pg(&self) -> bool {
        matches!(self, Tx::Pg(..))
    }
}

impl Reader {
    fn target(&self) -> Target<'_> {
        match self {
            Reader::Sqlite(p) => Target::SqlitePool(p),
            Reader::Pg(p, names) => Target::PgPool(p, names),
        }
    }

    api!();

    /// The SQLite pool (`None` on PostgreSQL), for tests and SQLite-only tools.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Reader::Sqlite(p) => Some(p),
            Reader::Pg(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_tables_are_rewritten_outside_literals() {
        let n = PgNames::new("of");
        assert_eq!(
            n.rewrite("SELECT COUNT(*) FROM api_orders o JOIN view_orders v ON v.order_id = o.order_id WHERE o.placed_at >= ?1 AND v.status = 'api_orders?'"),
            "SELECT COUNT(*) FROM of_api.api_orders o JOIN of_views.view_orders v ON v.order_id = o.order_id WHERE o.placed_at >= $1 AND v.status = 'api_orders?'"
        );
        assert_eq!(
            n.rewrite("UPDATE inv_stock SET available = available - ? WHERE product_id = ? AND x.inv_stock = ? AND inv_stock.y = 1"),
            "UPDATE of_inventory.inv_stock SET available = available - $1 WHERE product_id = $2 AND x.inv_stock = $3 AND inv_stock.y = 1"
        );
    }

    #[test]
    fn translations_are_cached_per_statement() {
        let n = PgNames::new("of");
        let a = n.translate("SELECT 1 FROM gw_ledger WHERE intent = ?");
        let b = n.translate("SELECT 1 FROM gw_ledger WHERE intent = ?");
        assert_eq!(&*a, "SELECT 1 FROM of_gateway.gw_ledger WHERE intent = $1");
        assert!(Arc::ptr_eq(&a, &b) || *a == *b);
    }
}
