//! The admin API client behind `mandate --server URL ...`.
//!
//! Credentials come from the environment, never the command line (where `ps` would show
//! them): `MANDATE_ADMIN_TOKEN` (an access token for the admin API), or `MANDATE_CLIENT_ID` and
//! `MANDATE_CLIENT_SECRET` of an agent holding an admin role, exchanged here for a token with
//! client credentials (RFC 6749 §4.4) for the admin API's audience (RFC 8707), and again
//! whenever that token expires (so `audit tail -f` can run for days). Plain http is accepted
//! only for a loopback server.

use anyhow::{Context, bail};
use mandate_core::admin::{ADMIN_SCOPE, resource_identifier};
use mandate_server::admin::page::Page;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub struct Remote {
    http: reqwest::Client,
    issuer: String,
    /// `<issuer>/admin/v1`.
    base: String,
    token: std::sync::Mutex<String>,
    /// Whether the token came from client credentials and can be renewed.
    renewable: bool,
}

impl Remote {
    pub async fn connect(server: &str) -> anyhow::Result<Self> {
        let issuer = server.trim_end_matches('/');
        let url = url::Url::parse(issuer).with_context(|| format!("--server `{server}`"))?;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => bail!("--server must be https (plain http only for a loopback address)"),
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let base = resource_identifier(issuer);
        let (token, renewable) = match std::env::var("MANDATE_ADMIN_TOKEN") {
            Ok(t) if !t.trim().is_empty() => (t.trim().to_owned(), false),
            _ => (client_credentials(&http, issuer, &base).await?, true),
        };
        Ok(Self {
            http,
            issuer: issuer.to_owned(),
            base,
            token: std::sync::Mutex::new(token),
            renewable,
        })
    }

    pub async fn get<R: DeserializeOwned>(&self, path: &str) -> anyhow::Result<R> {
        self.send(self.http.get(self.url(path))).await
    }

    /// `GET` with `query` serialised into the query string (unset fields left out).
    pub async fn get_query<Q: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> anyhow::Result<R> {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    /// One page of a listing: `GET` with `query`, the body's items, and the `after` cursor of
    /// the `Link: <...>; rel="next"` header when another page follows.
    pub async fn list<Q: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> anyhow::Result<Page<T>> {
        let (headers, text) = self
            .exchange(self.http.get(self.url(path)).query(query))
            .await?;
        let items = serde_json::from_str(&text)
            .context("the admin API's answer is not what was expected")?;
        let next = headers
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_cursor);
        Ok(Page { items, next })
    }

    pub async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<R> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn delete<R: DeserializeOwned>(&self, path: &str) -> anyhow::Result<R> {
        self.send(self.http.delete(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn token(&self) -> String {
        self.token.lock().map(|t| t.clone()).unwrap_or_default()
    }

    async fn send<R: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<R> {
        let (_, text) = self.exchange(req).await?;
        serde_json::from_str(&text).context("the admin API's answer is not what was expected")
    }

    /// Sends `req` with the bearer token (renewed once on a 401 when the CLI obtained it) and
    /// yields a successful answer's headers and body; an error answer becomes its description.
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::header::HeaderMap, String)> {
        let again = req.try_clone();
        let mut resp = req
            .bearer_auth(self.token())
            .send()
            .await
            .context("calling the admin API")?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED
            && self.renewable
            && let Some(again) = again
        {
            let fresh = client_credentials(&self.http, &self.issuer, &self.base).await?;
            if let Ok(mut token) = self.token.lock() {
                token.clone_from(&fresh);
            }
            resp = again
                .bearer_auth(fresh)
                .send()
                .await
                .context("calling the admin API")?;
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .context("reading the admin API's answer")?;
        if !status.is_success() {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| field(&v, "error_description").map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            bail!("{detail} (HTTP {})", status.as_u16());
        }
        Ok((headers, text))
    }
}

/// The `after` parameter of a `Link` header value's `rel="next"` target (RFC 8288), if any.
fn next_cursor(link: &str) -> Option<String> {
    link.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let (_, query) = target.split_once('?')?;
        let after = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "after")
            .map(|(_, v)| v.into_owned());
        if is_next { after } else { None }
    })
}

async fn client_credentials(
    http: &reqwest::Client,
    issuer: &str,
    admin_resource: &str,
) -> anyhow::Result<String> {
    let (Ok(id), Ok(secret)) = (
        std::env::var("MANDATE_CLIENT_ID"),
        std::env::var("MANDATE_CLIENT_SECRET"),
    ) else {
        bail!(
            "--server needs credentials: MANDATE_ADMIN_TOKEN, or MANDATE_CLIENT_ID and \
             MANDATE_CLIENT_SECRET of an agent with an admin role"
        );
    };
    let resp = http
        .post(format!("{issuer}/token"))
        .basic_auth(encode(&id), Some(encode(&secret)))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", ADMIN_SCOPE),
            ("resource", admin_resource),
        ])
        .send()
        .await
        .context("requesting an admin token")?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    match field(&body, "access_token") {
        Some(token) if status.is_success() => Ok(token.to_owned()),
        _ => bail!(
            "the server refused an admin token: {} {}",
            field(&body, "error").unwrap_or("unknown_error"),
            field(&body, "error_description").unwrap_or_default()
        ),
    }
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(serde_json::Value::as_str)
}

/// Percent-encodes one path segment or query value.
pub fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::next_cursor;

    #[test]
    fn the_next_cursor_comes_from_the_rel_next_link_only() {
        let link = "</admin/v1/grants?tenant_id=a&after=b2xk>; rel=\"prev\", \
                    </admin/v1/grants?tenant_id=a&limit=5&after=bmV4dA>; rel=\"next\"";
        assert_eq!(next_cursor(link).as_deref(), Some("bmV4dA"));
        assert_eq!(next_cursor("</x?after=y>; rel=\"prev\""), None);
        assert_eq!(next_cursor("garbage"), None);
    }
}
