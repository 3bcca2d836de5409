//! `WWW-Authenticate: Bearer` challenges for resource servers (RFC 6750 §3, RFC 9728 §5.1).
//!
//! Built here so every resource server (the guard, its proxy mode, the demo CRM) answers with
//! the same text. A request without credentials gets a bare challenge (no error code, §3.1);
//! a bad token `invalid_token` (401); a token lacking scope `insufficient_scope` (403) naming
//! the scope needed, which is how MCP clients learn to step up. Every challenge carries
//! `resource_metadata`, the URL of the resource's RFC 9728 document.

use crate::scope::ScopeSet;

/// Why a resource server refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// No bearer token was presented.
    Missing,
    /// The token is malformed, expired, revoked, or not for this resource.
    InvalidToken(&'static str),
    /// The request itself is malformed (e.g. two Authorization headers).
    InvalidRequest(&'static str),
    /// The token is valid but lacks scope; carries what would satisfy the request.
    InsufficientScope(ScopeSet),
}

impl BearerError {
    /// The HTTP status RFC 6750 §3.1 assigns.
    pub fn status(&self) -> u16 {
        match self {
            Self::Missing | Self::InvalidToken(_) => 401,
            Self::InvalidRequest(_) => 400,
            Self::InsufficientScope(_) => 403,
        }
    }

    /// The `WWW-Authenticate` header value.
    pub fn challenge(&self, resource_metadata: &str) -> String {
        let metadata = format!("resource_metadata=\"{}\"", quote_safe(resource_metadata));
        match self {
            Self::Missing => format!("Bearer {metadata}"),
            Self::InvalidToken(why) => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\", {metadata}",
                quote_safe(why)
            ),
            Self::InvalidRequest(why) => format!(
                "Bearer error=\"invalid_request\", error_description=\"{}\", {metadata}",
                quote_safe(why)
            ),
            Self::InsufficientScope(scope) => format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\", {metadata}",
                quote_safe(&scope.to_string())
            ),
        }
    }
}

/// Keeps a value inside a quoted-string: RFC 6750 §3 restricts these attributes to
/// `%x20-21 / %x23-5B / %x5D-7E`, so quotes, backslashes and controls are dropped.
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "https://crm.example/.well-known/oauth-protected-resource";

    #[test]
    fn challenges_follow_rfc_6750_and_9728() {
        let cases = [
            (
                BearerError::Missing,
                401,
                format!("Bearer resource_metadata=\"{META}\""),
            ),
            (
                BearerError::InvalidToken("token has expired"),
                401,
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"token has expired\", resource_metadata=\"{META}\""
                ),
            ),
            (
                BearerError::InsufficientScope(ScopeSet::parse("billing.read").unwrap()),
                403,
                format!(
                    "Bearer error=\"insufficient_scope\", scope=\"billing.read\", resource_metadata=\"{META}\""
                ),
            ),
            (
                BearerError::InvalidRequest("two Authorization headers"),
                400,
                format!(
                    "Bearer error=\"invalid_request\", error_description=\"two Authorization headers\", resource_metadata=\"{META}\""
                ),
            ),
        ];
        for (err, status, expected) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.challenge(META), expected);
        }
    }

    #[test]
    fn quoted_values_cannot_break_out() {
        let c = BearerError::InvalidToken("a\"b\\c\r\nd").challenge("x\"y");
        assert_eq!(
            c,
            "Bearer error=\"invalid_token\", error_description=\"abcd\", resource_metadata=\"xy\""
        );
    }
}
