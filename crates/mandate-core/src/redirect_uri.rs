//! Redirect URIs: what may be registered and how a presented one is matched.
//!
//! OAuth 2.1 §2.3.1 and §4.1.3 demand exact string matching, with one exception from RFC 8252
//! §7.3: a native app's loopback redirect URI may use any port, because the app binds an
//! ephemeral one at run time. Registration only admits https, loopback http, and private-use
//! schemes (RFC 8252 §7.1, which must contain a dot), and never a fragment.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use url::{Host, Url};

/// A registered redirect URI, validated at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri {
    raw: String,
    url: Url,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI is not an absolute URI")]
    NotAbsolute,
    #[error("redirect URI must not contain a fragment")]
    Fragment,
    #[error("redirect URI must use https, http on a loopback address, or a private-use scheme")]
    InsecureScheme,
    #[error("redirect URI must not contain user information")]
    UserInfo,
}

impl RedirectUri {
    pub fn parse(raw: &str) -> Result<Self, RedirectUriError> {
        let url = Url::parse(raw).map_err(|_| RedirectUriError::NotAbsolute)?;
        if url.fragment().is_some() || raw.contains('#') {
            return Err(RedirectUriError::Fragment);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::UserInfo);
        }
        match url.scheme() {
            "https" => {
                if url.host().is_none() {
                    return Err(RedirectUriError::NotAbsolute);
                }
            }
            "http" if is_loopback(&url) => {}
            "http" | "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => {
                return Err(RedirectUriError::InsecureScheme);
            }
            other if other.contains('.') => {}
            _ => return Err(RedirectUriError::InsecureScheme),
        }
        Ok(Self {
            raw: raw.to_owned(),
            url,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether this is an `http` URI on a loopback host, whose port may vary.
    pub fn is_loopback(&self) -> bool {
        self.url.scheme() == "http" && is_loopback(&self.url)
    }

    /// Whether `presented` is this registered URI: the exact string, or for a loopback
    /// registration, the same URI with any port (RFC 8252 §7.3).
    pub fn matches(&self, presented: &str) -> bool {
        if presented == self.raw {
            return true;
        }
        if !self.is_loopback() {
            return false;
        }
        let Ok(p) = Url::parse(presented) else {
            return false;
        };
        p.scheme() == "http"
            && p.host() == self.url.host()
            && p.path() == self.url.path()
            && p.query() == self.url.query()
            && p.fragment().is_none()
            && p.username().is_empty()
            && p.password().is_none()
    }

    /// The URI with authorization response parameters appended to its query (RFC 6749
    /// §4.1.2), keeping any query the registered URI already had.
    pub fn with_params<'a>(
        presented: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> String {
        match Url::parse(presented) {
            Ok(mut url) => {
                {
                    let mut q = url.query_pairs_mut();
                    for (k, v) in params {
                        q.append_pair(k, v);
                    }
                }
                url.into()
            }
            Err(_) => presented.to_owned(),
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for RedirectUri {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for RedirectUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RedirectUri::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_cases() {
        let cases: &[(&str, bool, &str)] = &[
            ("https://app.example.com/cb", true, "https"),
            ("https://app.example.com/cb?x=1", true, "https with query"),
            ("http://127.0.0.1/callback", true, "loopback v4"),
            ("http://[::1]:8080/cb", true, "loopback v6"),
            ("http://localhost:3000/cb", true, "localhost"),
            ("com.example.app:/oauth", true, "private-use scheme"),
            (
                "http://app.example.com/cb",
                false,
                "plain http off loopback",
            ),
            ("https://app.example.com/cb#frag", false, "fragment"),
            ("https://app.example.com/cb#", false, "empty fragment"),
            ("javascript:alert(1)", false, "javascript"),
            ("data:text/html,hi", false, "data"),
            ("myapp:/cb", false, "private-use scheme without a dot"),
            ("/relative", false, "relative"),
            ("https://user:pw@app.example.com/cb", false, "userinfo"),
        ];
        for (uri, ok, reason) in cases {
            assert_eq!(RedirectUri::parse(uri).is_ok(), *ok, "{reason}: {uri}");
        }
    }

    #[test]
    fn matching_cases() {
        let https = RedirectUri::parse("https://app.example.com/cb").unwrap();
        let loopback = RedirectUri::parse("http://127.0.0.1/callback").unwrap();
        let cases: &[(&RedirectUri, &str, bool, &str)] = &[
            (&https, "https://app.example.com/cb", true, "exact"),
            (
                &https,
                "https://app.example.com/cb/",
                false,
                "trailing slash",
            ),
            (&https, "https://APP.example.com/cb", false, "case differs"),
            (
                &https,
                "https://app.example.com:443/cb",
                false,
                "explicit default port",
            ),
            (
                &https,
                "https://app.example.com/cb?x=1",
                false,
                "extra query",
            ),
            (
                &https,
                "https://app.example.com.evil.com/cb",
                false,
                "suffix domain",
            ),
            (
                &loopback,
                "http://127.0.0.1:51234/callback",
                true,
                "loopback any port",
            ),
            (
                &loopback,
                "http://127.0.0.1/callback",
                true,
                "loopback exact",
            ),
            (
                &loopback,
                "http://127.0.0.1:51234/other",
                false,
                "loopback other path",
            ),
            (
                &loopback,
                "http://127.0.0.2:51234/callback",
                false,
                "other loopback address",
            ),
            (
                &loopback,
                "https://127.0.0.1:51234/callback",
                false,
                "scheme differs",
            ),
            (
                &loopback,
                "http://127.0.0.1:5/callback?x=1",
                false,
                "loopback extra query",
            ),
            (
                &loopback,
                "http://u@127.0.0.1:5/callback",
                false,
                "loopback userinfo",
            ),
            (
                &loopback,
                "http://127.0.0.1:5/callback#f",
                false,
                "loopback fragment",
            ),
        ];
        for (registered, presented, ok, reason) in cases {
            assert_eq!(registered.matches(presented), *ok, "{reason}: {presented}");
        }
    }

    #[test]
    fn response_params_keep_existing_query() {
        let out = RedirectUri::with_params(
            "https://app.example.com/cb?tab=1",
            [("code", "abc"), ("state", "x y")],
        );
        assert_eq!(out, "https://app.example.com/cb?tab=1&code=abc&state=x+y");
    }
}
