//! Bulk loading ([`crate::BulkLoad`]): many users, grants, refresh families (each holding its
//! first token) and authorization codes in one transaction.
//!
//! Why a path of its own: `mandate bulk-load` creates millions of grants to show that the cost
//! of a request does not grow with the data. Through the per-row methods that would be one
//! statement (and on PostgreSQL one round trip) per row, three rows per grant (its user, the
//! grant and its family, which holds its first token); a load of ten million would take hours. Here each
//! table of a batch takes a handful of statements.
//!
//! What is shared with the per-row path is what decides the stored format: the tables, their
//! columns, and how each record becomes column values ([`grant_columns`] and friends, in the
//! same order and encoding as `INSERT_USER`, `INSERT_GRANT`, `INSERT_FAMILY` and `INSERT_CODE`; the conformance suite reads loaded rows back through the ordinary getters).
//! How the values are bound is the backend's own: SQLite takes multi-row `VALUES` with `?`
//! parameters ([`Table::values_insert`]; `$N` names would cost O(n²) to bind, see
//! `SqliteStore::insert_events`), PostgreSQL one `UNNEST` of arrays per table
//! ([`Table::unnest_insert`]), one parameter per column whatever the row count.

use mandate_core::code::AuthorizationCode;
use mandate_core::directory::User;
use mandate_core::grant::Grant;
use mandate_core::refresh::RefreshFamily;

/// Rows per SQLite `INSERT`: far below SQLite's 32,766 parameters even for the widest table.
pub(crate) const SQLITE_ROWS_PER_INSERT: usize = 500;

/// A table as the loader writes it: its name, and its loaded columns with their PostgreSQL
/// types (for `UNNEST`'s typed arrays).
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: &'static [(&'static str, &'static str)],
}

pub(crate) const USERS: Table = Table {
    name: "users",
    columns: &[
        ("id", "text"),
        ("tenant_id", "text"),
        ("login", "text"),
        ("display_name", "text"),
        ("password_hash", "text"),
        ("disabled", "boolean"),
    ],
};

pub(crate) const GRANTS: Table = Table {
    name: "grants",
    columns: &[
        ("id", "text"),
        ("tenant_id", "text"),
        ("user_id", "text"),
        ("client_id", "text"),
        ("scopes", "text"),
        ("purpose", "text"),
        ("created_at", "bigint"),
        ("expires_at", "bigint"),
        ("revoked_at", "bigint"),
        ("revoked_reason", "text"),
    ],
};

pub(crate) const FAMILIES: Table = Table {
    name: "refresh_families",
    columns: &[
        ("id", "text"),
        ("grant_id", "text"),
        ("client_id", "text"),
        ("tenant_id", "text"),
        ("user_id", "text"),
        ("scopes", "text"),
        ("resource", "text"),
        ("created_at", "bigint"),
        ("revoked_at", "bigint"),
        ("live_generation", "bigint"),
        ("live_hash", "text"),
        ("live_issued_at", "bigint"),
        ("live_expires_at", "bigint"),
    ],
};

pub(crate) const CODES: Table = Table {
    name: "authorization_codes",
    columns: &[
        ("code_hash", "text"),
        ("client_id", "text"),
        ("grant_id", "text"),
        ("user_id", "text"),
        ("tenant_id", "text"),
        ("redirect_uri", "text"),
        ("redirect_uri_explicit", "boolean"),
        ("code_challenge", "text"),
        ("resource", "text"),
        ("scopes", "text"),
        ("created_at", "bigint"),
        ("expires_at", "bigint"),
        ("family_id", "text"),
    ],
};

impl Table {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `INSERT INTO t (...) VALUES (?, ...), ...` for `rows` rows (SQLite).
    pub(crate) fn values_insert(&self, rows: usize) -> String {
        let row = format!("({})", vec!["?"; self.columns.len()].join(", "));
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.name,
            self.column_list(),
            vec![row.as_str(); rows].join(", ")
        )
    }

    /// `INSERT INTO t (...) SELECT * FROM UNNEST($1::type[], ...)` (PostgreSQL).
    pub(crate) fn unnest_insert(&self) -> String {
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
            .collect();
        format!(
            "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
            self.name,
            self.column_list(),
            arrays.join(", ")
        )
    }
}

/// One column's values for a batch, in row order.
pub(crate) enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<bool>),
}

fn text<T>(rows: &[T], f: impl Fn(&T) -> Option<String>) -> Column {
    Column::Text(rows.iter().map(f).collect())
}

fn int<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> Column {
    Column::Int(rows.iter().map(f).collect())
}

/// [`USERS`]' columns, encoded as `INSERT_USER` binds them.
pub(crate) fn user_columns(users: &[User]) -> Vec<Column> {
    vec![
        text(users, |u| Some(u.id.clone())),
        text(users, |u| Some(u.tenant_id.clone())),
        text(users, |u| Some(u.login.clone())),
        text(users, |u| Some(u.display_name.clone())),
        text(users, |u| Some(u.password_hash.clone())),
        Column::Bool(users.iter().map(|u| u.disabled).collect()),
    ]
}

/// [`GRANTS`]' columns, encoded as `INSERT_GRANT` binds them.
pub(crate) fn grant_columns(grants: &[Grant]) -> Vec<Column> {
    vec![
        text(grants, |g| Some(g.id.clone())),
        text(grants, |g| Some(g.tenant_id.clone())),
        text(grants, |g| g.user_id.clone()),
        text(grants, |g| Some(g.client_id.clone())),
        text(grants, |g| Some(g.scopes.to_string())),
        text(grants, |g| g.purpose.clone()),
        int(grants, |g| Some(g.created_at.unix())),
        int(grants, |g| g.expires_at.map(|t| t.unix())),
        int(grants, |g| g.revoked_at.map(|t| t.unix())),
        text(grants, |g| g.revoked_reason.clone()),
    ]
}

/// [`FAMILIES`]' columns, encoded as `INSERT_FAMILY` binds them.
pub(crate) fn family_columns(families: &[RefreshFamily]) -> crate::StoreResult<Vec<Column>> {
    let generations = families
        .iter()
        .map(|f| {
            f.live
                .as_ref()
                .map(|l| super::refresh::generation(l.generation))
                .transpose()
        })
        .collect::<crate::StoreResult<Vec<_>>>()?;
    Ok(vec![
        text(families, |f| Some(f.id.clone())),
        text(families, |f| Some(f.grant_id.clone())),
        text(families, |f| Some(f.client_id.clone())),
        text(families, |f| Some(f.tenant_id.clone())),
        text(families, |f| f.user_id.clone()),
        text(families, |f| Some(f.scopes.to_string())),
        text(families, |f| Some(f.resource.clone())),
        int(families, |f| Some(f.created_at.unix())),
        int(families, |f| f.revoked_at.map(|t| t.unix())),
        Column::Int(generations),
        text(families, |f| f.live.as_ref().map(|l| l.token_hash.clone())),
        int(families, |f| f.live.as_ref().map(|l| l.issued_at.unix())),
        int(families, |f| f.live.as_ref().map(|l| l.expires_at.unix())),
    ])
}

/// [`CODES`]' columns, encoded as `INSERT_CODE` binds them.
pub(crate) fn code_columns(codes: &[AuthorizationCode]) -> Vec<Column> {
    vec![
        text(codes, |c| Some(c.code_hash.clone())),
        text(codes, |c| Some(c.client_id.clone())),
        text(codes, |c| Some(c.grant_id.clone())),
        text(codes, |c| Some(c.user_id.clone())),
        text(codes, |c| Some(c.tenant_id.clone())),
        text(codes, |c| Some(c.redirect_uri.clone())),
        Column::Bool(codes.iter().map(|c| c.redirect_uri_explicit).collect()),
        text(codes, |c| Some(c.code_challenge.as_str().to_owned())),
        text(codes, |c| Some(c.resource.clone())),
        text(codes, |c| Some(c.scopes.to_string())),
        int(codes, |c| Some(c.created_at.unix())),
        int(codes, |c| Some(c.expires_at.unix())),
        text(codes, |c| c.family_id.clone()),
    ]
}

/// `ANALYZE` of every table a load writes (PostgreSQL).
pub(crate) fn analyze_statement() -> String {
    let names: Vec<&str> = [&USERS, &GRANTS, &FAMILIES, &CODES]
        .iter()
        .map(|t| t.name)
        .collect();
    format!("ANALYZE {}", names.join(", "))
}

/// Every table of a batch with its columns and row count, in insertion order (grants before
/// the families that name them).
pub(crate) fn batch_tables(
    batch: &crate::LoadBatch,
) -> crate::StoreResult<[(&'static Table, Vec<Column>, usize); 4]> {
    let families = &batch.families;
    Ok([
        (&USERS, user_columns(&batch.users), batch.users.len()),
        (&GRANTS, grant_columns(&batch.grants), batch.grants.len()),
        (&FAMILIES, family_columns(families)?, families.len()),
        (&CODES, code_columns(&batch.codes), batch.codes.len()),
    ])
}

/// What a failed load reports: a duplicate (a user's second live grant to the agent too) is a
/// conflict, a missing grant a `NotFound`.
pub(crate) fn load_error(e: sqlx::Error) -> crate::StoreError {
    super::write_error("bulk-loaded row", "grant")(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_list_every_column_once_per_row() {
        let two_users = "INSERT INTO users (id, tenant_id, login, display_name, password_hash, \
             disabled) VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?)";
        assert_eq!(USERS.values_insert(2), two_users);
        assert_eq!(
            USERS.unnest_insert(),
            "INSERT INTO users (id, tenant_id, login, display_name, password_hash, disabled) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::boolean[])"
        );
        for table in [&USERS, &GRANTS, &FAMILIES, &CODES] {
            assert!(table.columns.len() * SQLITE_ROWS_PER_INSERT < 32_766);
        }
    }
}
