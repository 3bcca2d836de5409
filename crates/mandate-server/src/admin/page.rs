//! Keyset pagination for the admin listings (users, agents, grants, API keys).
//!
//! A database may hold millions of users and grants (and self-registered agents), so no
//! listing ever returns them all: each answers one page of at most `limit` items (1-1000,
//! default 100) and, when more follow, a cursor that continues after the page's last item. The
//! cursor is opaque to callers (base64url of the last item's sort key), and the store reads a
//! page as one index range scan from it, so page 10,000 costs what page 1 costs and rows added
//! meanwhile never shift a page.
//!
//! Over HTTP the body stays the array of items and the next page is a `Link` header with
//! `rel="next"` (RFC 8288): the same request, at the API's public address, with `after` set.
//! The CLI and the console take the cursor from [`Page::next`] directly.

use crate::errors::{AdminError, ServerError};
use axum::Json;
use axum::http::header::{HeaderValue, LINK};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_core::time::Timestamp;
use serde::Serialize;

/// Items per page when the caller names no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page a caller may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// One page of a listing: at most the asked number of items, and the cursor of the next page
/// (`None` on the last page).
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// An empty last page.
    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            next: None,
        }
    }

    /// A page from `rows` fetched with [`fetch_limit`]`(limit)`: the first `limit` of them, and
    /// when there were more, the cursor after the last one kept.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: u32,
        cursor: impl Fn(&R) -> String,
        view: impl FnMut(R) -> T,
    ) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(cursor) } else { None };
        Self {
            items: rows.into_iter().map(view).collect(),
            next,
        }
    }
}

/// The page size asked for: the default when absent, a 400 outside 1-1000.
pub fn limit(given: Option<u32>) -> Result<u32, ServerError> {
    match given {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => {
            Err(AdminError::Invalid(format!("limit must be between 1 and {MAX_LIMIT}")).into())
        }
    }
}

/// How many rows to read for a page of `limit`: one more, to learn whether another page follows
/// without a second query or an empty last page.
pub fn fetch_limit(limit: u32) -> u32 {
    limit + 1
}

/// The cursor after an item of a listing ordered by one unique text key (a user's login).
pub fn key_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// The key a [`key_cursor`] holds.
pub fn parse_key_cursor(after: &str) -> Result<String, ServerError> {
    URL_SAFE_NO_PAD
        .decode(after)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(bad_cursor)
}

/// The cursor after an item of a listing ordered newest first (creation time, then id).
pub fn time_cursor(created_at: Timestamp, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{id}", created_at.unix()))
}

/// The creation time and id a [`time_cursor`] holds.
pub fn parse_time_cursor(after: &str) -> Result<(Timestamp, String), ServerError> {
    let text = parse_key_cursor(after)?;
    let (secs, id) = text.split_once('.').ok_or_else(bad_cursor)?;
    let secs: i64 = secs.parse().map_err(|_| bad_cursor())?;
    if id.is_empty() {
        return Err(bad_cursor());
    }
    Ok((Timestamp::from_unix(secs), id.to_owned()))
}

pub(super) fn bad_cursor() -> ServerError {
    AdminError::Invalid(
        "after must be a cursor from a previous page of this listing (its Link rel=\"next\")"
            .into(),
    )
    .into()
}

/// A page answered over HTTP: the items as the JSON body and, when more follow, a `Link`
/// header to the next page: this request at the API's public address (the issuer's, so a
/// proxy in front does not make it wrong), with `after` set to the cursor.
pub struct Listed<T> {
    page: Page<T>,
    next: Option<String>,
}

impl<T> Listed<T> {
    /// `page` as the answer to `uri`, a request to the admin API's router (the path below
    /// `/admin/v1`, as axum hands it to a nested router), whose public address is `api`.
    pub fn new(mut page: Page<T>, api: &str, uri: &Uri) -> Self {
        let next = page
            .next
            .take()
            .map(|cursor| next_target(api, uri, &cursor));
        Self { page, next }
    }
}

impl<T: Serialize> IntoResponse for Listed<T> {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::OK, Json(self.page.items)).into_response();
        if let Some(next) = self.next {
            let link = format!("<{next}>; rel=\"next\"");
            if let Ok(value) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(LINK, value);
            }
        }
        response
    }
}

/// `api` + `uri`'s path, and its query with `after` replaced by `cursor`.
fn next_target(api: &str, uri: &Uri, cursor: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    let pairs = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes());
    for (k, v) in pairs.filter(|(k, _)| k != "after") {
        query.append_pair(&k, &v);
    }
    query.append_pair("after", cursor);
    format!("{api}{}?{}", uri.path(), query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_clear_400() {
        assert_eq!(
            parse_key_cursor(&key_cursor("zoë@acme")).unwrap(),
            "zoë@acme"
        );
        let (at, id) = parse_time_cursor(&time_cursor(Timestamp::from_unix(7), "g_1.x")).unwrap();
        assert_eq!((at.unix(), id.as_str()), (7, "g_1.x"));
        for bad in ["%%%", "bm8", &key_cursor("x.g"), &key_cursor("7.")] {
            assert!(parse_time_cursor(bad).is_err(), "{bad}");
        }
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
    }

    #[test]
    fn a_page_keeps_limit_items_and_points_after_the_last_when_more_follow() {
        let full = Page::from_rows(vec![1, 2, 3], 2, |n| n.to_string(), |n| n * 10);
        assert_eq!(
            (full.items, full.next.as_deref()),
            (vec![10, 20], Some("2"))
        );
        let last = Page::from_rows(vec![1, 2], 2, |n| n.to_string(), |n| n);
        assert_eq!((last.items, last.next), (vec![1, 2], None));
    }

    #[test]
    fn the_next_link_replaces_after_and_keeps_the_other_parameters() {
        let uri: Uri = "/users?tenant_id=a%20b&after=old&limit=5".parse().unwrap();
        assert_eq!(
            next_target("https://auth.example/t/admin/v1", &uri, "Y3Vy"),
            "https://auth.example/t/admin/v1/users?tenant_id=a+b&limit=5&after=Y3Vy"
        );
    }
}
