//! RFC 9728 protected resource metadata: the document and where it lives.
//!
//! Clients (MCP clients in particular) learn which authorization server to use from this
//! document, whose URL every challenge carries in `resource_metadata`. Its location is derived
//! from the resource identifier exactly as RFC 9728 §3.1 says (well-known segment inserted
//! between origin and path), so the challenge URL and the served route cannot disagree.

use crate::error::GuardError;
use serde::{Deserialize, Serialize};

/// RFC 9728 §3.1: the well-known path segment.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// RFC 9728 §2 protected resource metadata (the fields the guard publishes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    pub bearer_methods_supported: Vec<String>,
}

/// An http(s) URL split into origin and path (path without trailing `/`, empty for root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitUrl {
    pub origin: String,
    pub path: String,
}

/// Splits an issuer or resource identifier; refuses non-http(s), query and fragment
/// (RFC 8414 §2, RFC 9728 §1.2).
pub(crate) fn split_url(raw: &str) -> Result<SplitUrl, GuardError> {
    let bad = || GuardError::InvalidUrl(raw.to_owned());
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.query().is_some()
        || url.fragment().is_some()
        || url.host_str().is_none()
    {
        return Err(bad());
    }
    Ok(SplitUrl {
        origin: url.origin().ascii_serialization(),
        path: url.path().trim_end_matches('/').to_owned(),
    })
}

/// The RFC 9728 §3.1 metadata URL for a resource identifier.
pub(crate) fn metadata_url(resource: &SplitUrl) -> String {
    format!("{}{WELL_KNOWN}{}", resource.origin, resource.path)
}

/// The RFC 8414 §3.1 metadata URL for an issuer.
pub(crate) fn issuer_metadata_url(issuer: &SplitUrl) -> String {
    format!(
        "{}/.well-known/oauth-authorization-server{}",
        issuer.origin, issuer.path
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_locations() {
        let cases = [
            (
                "http://127.0.0.1:8081",
                "http://127.0.0.1:8081/.well-known/oauth-protected-resource",
                "http://127.0.0.1:8081/.well-known/oauth-authorization-server",
            ),
            (
                "https://crm.example/",
                "https://crm.example/.well-known/oauth-protected-resource",
                "https://crm.example/.well-known/oauth-authorization-server",
            ),
            (
                "https://api.example/crm/v1",
                "https://api.example/.well-known/oauth-protected-resource/crm/v1",
                "https://api.example/.well-known/oauth-authorization-server/crm/v1",
            ),
        ];
        for (raw, resource, issuer) in cases {
            let s = split_url(raw).unwrap();
            assert_eq!(metadata_url(&s), resource, "{raw}");
            assert_eq!(issuer_metadata_url(&s), issuer, "{raw}");
        }
    }

    #[test]
    fn refuses_non_http_query_and_fragment() {
        for raw in [
            "ftp://x",
            "http://x/?a=1",
            "http://x/#f",
            "not a url",
            "urn:x",
        ] {
            assert!(split_url(raw).is_err(), "{raw}");
        }
    }
}
