//! The one SQL implementation of every store trait, shared by SQLite and PostgreSQL.
//!
//! sqlx has no object-safe "any database" executor we could write against once, and generic
//! functions over `sqlx::Database` drown in trait bounds. Instead each aggregate module here
//! holds its SQL text as constants, its `#[derive(sqlx::FromRow)]` row types (generic over the
//! backend) with their conversions to core types, and a `macro_rules!` macro that expands to
//! the `impl XStore for $store` block. `sqlite.rs` and `postgres.rs` each invoke
//! [`impl_store_traits!`] once, so both backends run the same statements, byte for byte.
//!
//! SQL is written in the intersection of the two dialects: `$N` placeholders (sqlx's SQLite
//! driver binds `$N` by number, so a parameter may be repeated), `RETURNING`,
//! `ON CONFLICT ... DO UPDATE`, `CAST`, no `::` casts and no dialect-only functions.
//!
//! # Layout
//! - [`directory`]: tenants, users, agents, the scope and resource catalog.
//! - [`grants`]: grants and authorization codes.
//! - [`refresh`]: refresh families and tokens, revoked access-token ids.
//! - [`sessions`]: browser sessions, pending authorization requests, signing keys.
//! - [`events`]: the append-only event log.
//! - [`housekeeping`]: purging expired short-lived records.
//! - [`api_keys`]: scoped API keys, their rotation and revocation.
//! - [`registrations`]: dynamically registered clients and metadata document clients.
//! - [`replay`]: remembered client assertion `jti`s.
//! - [`bulk`]: revoking every grant of a user, tenant, agent, or agent within a tenant.
//! - [`load`]: bulk-loading grants with their refresh families (tables and column encoding;
//!   each backend binds them its own way).
//! - [`admin_roles`]: who may use the admin API, over which tenant.
//! - [`export_cursors`]: how far each audit export sink has delivered.
//! - [`retention`]: signed audit checkpoints and purging old events up to one.
//! - [`token_state`]: whether an access token's jti, grant, agent and user let it be used.
//!
//! Each backend type also has an inherent `events_committed(&self)`, called after every commit
//! that wrote events (SQLite announces it in-process; PostgreSQL's trigger already did), and
//! `commit_entries(&self, entries)`, which writes a group-commit batch with changes: through
//! the shared `commit_batch_pooled`, or on a SQLite file database's batch connection
//! ([`crate::sqlite_batch_writer`]).
//!
//! Transactions that write start with a write statement: a SQLite transaction that reads first
//! and writes later can fail to upgrade its lock under concurrency, which the busy timeout
//! does not cover.

pub(crate) mod admin_roles;
pub(crate) mod api_keys;
pub(crate) mod bulk;
pub(crate) mod directory;
pub(crate) mod events;
pub(crate) mod export_cursors;
pub(crate) mod grants;
pub(crate) mod housekeeping;
pub(crate) mod load;
pub(crate) mod refresh;
pub(crate) mod registrations;
pub(crate) mod replay;
pub(crate) mod retention;
pub(crate) mod sessions;
pub(crate) mod token_state;

use crate::StoreError;
use mandate_core::scope::ScopeSet;
use mandate_core::time::Timestamp;

/// Implements every store trait except `Store` itself for `$store`, a type with a
/// `pool: sqlx::Pool<$db>` field and a method `inline_reads(&self) -> Option<&InlineReads>`
/// (the hottest point reads are tried there first: [`crate::sqlite_inline_reads`]).
macro_rules! impl_store_traits {
    ($store:ty, $db:ty) => {
        $crate::sql::directory::impl_directory!($store);
        $crate::sql::grants::impl_grants!($store, $db);
        $crate::sql::refresh::impl_refresh!($store, $db);
        $crate::sql::sessions::impl_sessions!($store);
        $crate::sql::events::impl_events!($store, $db);
        $crate::sql::housekeeping::impl_housekeeping!($store);
        $crate::sql::api_keys::impl_api_keys!($store, $db);
        $crate::sql::registrations::impl_registrations!($store, $db);
        $crate::sql::replay::impl_replay!($store);
        $crate::sql::admin_roles::impl_admin_roles!($store);
        $crate::sql::bulk::impl_bulk!($store, $db);
        $crate::sql::export_cursors::impl_export_cursors!($store);
        $crate::sql::retention::impl_retention!($store);
        $crate::sql::token_state::impl_token_state!($store);
    };
}
pub(crate) use impl_store_traits;

/// Maps a failed write: a unique-constraint violation means `what` already exists, a
/// foreign-key violation means the record it refers to (`parent`) does not.
pub(crate) fn write_error(
    what: &'static str,
    parent: &'static str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound(parent),
        _ => StoreError::Database(e),
    }
}

/// Parses a stored scope string; a value that does not parse is corruption, not a panic.
pub(crate) fn scopes(stored: &str, what: &'static str) -> Result<ScopeSet, StoreError> {
    ScopeSet::parse(stored).map_err(|_| StoreError::Corrupt(what))
}

pub(crate) fn ts(unix: i64) -> Timestamp {
    Timestamp::from_unix(unix)
}

pub(crate) fn opt_ts(unix: Option<i64>) -> Option<Timestamp> {
    unix.map(Timestamp::from_unix)
}

/// A `u64` for a BIGINT column. Values beyond `i64::MAX` (centuries of seconds) saturate.
pub(crate) fn to_bigint(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A BIGINT column read back as `u64`; negative is corruption.
pub(crate) fn from_bigint(v: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

/// A `WHERE` clause over optional filters, numbering `$N` placeholders from a given start, so
/// that a listing query binds only the filters that are set (and PostgreSQL can use an index
/// instead of planning around `$1 IS NULL OR ...`). The text is the same for both backends.
pub(crate) struct Conditions<'a> {
    parts: Vec<String>,
    next: usize,
    binds: Vec<Bind<'a>>,
}

/// One value to bind, in placeholder order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// Binds every value of a [`Conditions`] to a query, in order.
macro_rules! bind_all {
    ($query:expr, $binds:expr) => {{
        let mut query = $query;
        for value in $binds {
            query = match value {
                $crate::sql::Bind::Text(v) => query.bind(v),
                $crate::sql::Bind::Int(v) => query.bind(v),
            };
        }
        query
    }};
}
pub(crate) use bind_all;

/// Runs `$statement` (a read's future, on `&mut` connection `$conn`) as one of `$store`'s
/// point reads: on PostgreSQL, on a held connection, and once more on another if that one had
/// ended ([`crate::postgres_point_reads::PointRead`]); on SQLite, on a pooled connection.
/// Bounded on PostgreSQL by [`crate::postgres_point_reads::READ_DEADLINE`]. Evaluates to
/// the statement's value; returns the store error from the enclosing function.
macro_rules! point_read {
    ($store:expr, |$conn:ident| $statement:expr) => {{
        let mut read = $store.point_read();
        loop {
            let mut lent = read.connection().await?;
            let $conn = &mut *lent;
            let result = match read.deadline() {
                None => $statement.await,
                Some(deadline) => match ::tokio::time::timeout(deadline, $statement).await {
                    Ok(result) => result,
                    Err(_) => return Err($crate::StoreError::TimedOut),
                },
            };
            if let Some(value) = read.settle(lent, result)? {
                break value;
            }
        }
    }};
}
pub(crate) use point_read;

/// The row whose key is `$key` as a core type, through `$sql`: read on an inline connection
/// (`$inline`, [`crate::sqlite_inline_reads`]) where `$store` has them, else as `$row` by
/// one of the store's point reads ([`point_read`]). For the point reads of the hot paths (a
/// code, a refresh token, a family).
macro_rules! lookup_by_key {
    ($store:expr, $sql:expr, $inline:path, $row:ty, $key:expr) => {{
        let inline = $store
            .inline_reads()
            .and_then(|reads| reads.read(|conn| $inline(conn, $key)));
        let row: Option<$row> = match inline {
            Some(row) => row,
            None => {
                $crate::sql::point_read!($store, |conn| {
                    ::sqlx::query_as::<_, $row>($sql)
                        .bind($key)
                        .fetch_optional(conn)
                })
            }
        };
        row.map(TryInto::try_into).transpose()
    }};
}
pub(crate) use lookup_by_key;

/// Runs a [`Conditions::capped_count`] statement and yields its count as `u32`.
macro_rules! capped_count {
    ($pool:expr, $sql:expr, $binds:expr) => {{
        let query = $crate::sql::bind_all!(::sqlx::query_scalar::<_, i64>($sql), $binds);
        let n = query.fetch_one($pool).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }};
}
pub(crate) use capped_count;

impl<'a> Conditions<'a> {
    /// No conditions yet; the first placeholder added will be `$first_free` (lower numbers
    /// belong to the caller's fixed parameters).
    pub(crate) fn new(first_free: usize) -> Self {
        Self {
            parts: Vec::new(),
            next: first_free,
            binds: Vec::new(),
        }
    }

    /// Adds `column = $N` if `value` is set.
    pub(crate) fn eq(&mut self, column: &str, value: Option<&'a str>) {
        if let Some(value) = value {
            self.parts.push(format!("{column} = ${}", self.next));
            self.next += 1;
            self.binds.push(Bind::Text(value));
        }
    }

    /// Adds `column <op> $N` for an integer bound if `value` is set; `op` is a comparison
    /// operator written by the caller (`>=`, `<`, ...), never user input.
    pub(crate) fn cmp(&mut self, column: &str, op: &'static str, value: Option<i64>) {
        if let Some(value) = value {
            self.parts.push(format!("{column} {op} ${}", self.next));
            self.next += 1;
            self.binds.push(Bind::Int(value));
        }
    }

    /// Adds `column IN ($N, $N+1, ...)` if `values` is not empty.
    pub(crate) fn any_of(&mut self, column: &str, values: &'a [String]) {
        if values.is_empty() {
            return;
        }
        let placeholders: Vec<String> = (0..values.len())
            .map(|i| format!("${}", self.next + i))
            .collect();
        self.parts
            .push(format!("{column} IN ({})", placeholders.join(", ")));
        self.next += values.len();
        self.binds
            .extend(values.iter().map(|v| Bind::Text(v.as_str())));
    }

    /// Adds a condition without parameters of its own.
    pub(crate) fn raw(&mut self, condition: &str) {
        self.parts.push(condition.to_owned());
    }

    /// Adds `column > $N` if `value` is set: where a listing ordered by one unique text column
    /// continues after the previous page's last row.
    pub(crate) fn after(&mut self, column: &str, value: Option<&'a str>) {
        if let Some(value) = value {
            self.parts.push(format!("{column} > ${}", self.next));
            self.next += 1;
            self.binds.push(Bind::Text(value));
        }
    }

    /// Adds `(created_at, id) < ($N, $N+1)` if `cursor` is set: where a listing ordered newest
    /// first (`created_at DESC, id DESC`) continues after the previous page's last row. A
    /// row-value comparison, so both databases start the index scan at the cursor instead of
    /// reading and discarding every row before it.
    pub(crate) fn older_than(&mut self, cursor: Option<(i64, &'a str)>) {
        if let Some((created_at, id)) = cursor {
            self.parts.push(format!(
                "(created_at, id) < (${}, ${})",
                self.next,
                self.next + 1
            ));
            self.next += 2;
            self.binds.push(Bind::Int(created_at));
            self.binds.push(Bind::Text(id));
        }
    }

    /// `select` with these conditions, in `order`, at most `limit` rows.
    pub(crate) fn page(mut self, select: &str, order: &str, limit: u32) -> (String, Vec<Bind<'a>>) {
        let limit_at = self.next;
        self.binds.push(Bind::Int(i64::from(limit)));
        let (clause, binds) = self.finish();
        (
            format!("{select}{clause} ORDER BY {order} LIMIT ${limit_at}"),
            binds,
        )
    }

    /// How many rows of `table` match, counting no further than `cap`: the inner `LIMIT`
    /// stops the scan there, so a count on a table of millions stays a few thousand index
    /// entries.
    pub(crate) fn capped_count(mut self, table: &str, cap: u32) -> (String, Vec<Bind<'a>>) {
        let limit_at = self.next;
        self.binds.push(Bind::Int(i64::from(cap)));
        let (clause, binds) = self.finish();
        (
            format!(
                "SELECT count(*) FROM (SELECT 1 FROM {table}{clause} LIMIT ${limit_at}) capped"
            ),
            binds,
        )
    }

    /// The clause (empty, or ` WHERE a AND b`) and the values to bind, in placeholder order.
    pub(crate) fn finish(self) -> (String, Vec<Bind<'a>>) {
        let clause = if self.parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.parts.join(" AND "))
        };
        (clause, self.binds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_number_only_the_filters_that_are_set() {
        let mut c = Conditions::new(2);
        c.raw("seq > $1");
        c.eq("tenant_id", Some("acme"));
        c.eq("action", None);
        c.eq("grant_id", Some("g_1"));
        c.raw("revoked_at IS NULL");
        c.cmp("at", ">=", Some(7));
        c.cmp("at", "<", None);
        let (sql, binds) = c.finish();
        assert_eq!(
            sql,
            " WHERE seq > $1 AND tenant_id = $2 AND grant_id = $3 AND revoked_at IS NULL \
             AND at >= $4"
        );
        assert_eq!(
            binds,
            vec![Bind::Text("acme"), Bind::Text("g_1"), Bind::Int(7)]
        );
    }

    #[test]
    fn no_conditions_means_no_where() {
        let (sql, binds) = Conditions::new(1).finish();
        assert_eq!(sql, "");
        assert!(binds.is_empty());
    }

    #[test]
    fn bigint_conversions_never_wrap() {
        assert_eq!(to_bigint(u64::MAX), i64::MAX);
        assert_eq!(from_bigint(900, "ttl").ok(), Some(900));
        assert!(matches!(
            from_bigint(-1, "ttl"),
            Err(StoreError::Corrupt("ttl"))
        ));
    }
}
