//! Resource servers and audience selection (RFC 8707).
//!
//! Every access token names exactly one audience, the resource server it is for, so a token
//! stolen from one API cannot be replayed at another. Resources are registered with the scopes
//! they accept; an unknown or disallowed `resource` is `invalid_target`, never ignored.

use crate::client::Agent;
use crate::error::OAuthError;
use crate::scope::ScopeSet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceServer {
    /// The resource indicator: an absolute URI without fragment, compared exactly.
    pub identifier: String,
    pub name: String,
    /// Scopes this resource accepts; a token for it never carries others.
    pub scopes: ScopeSet,
    /// The resource server's own credential, for introspection and the revocation feed:
    /// an id (distinct from every agent's client id) and the `sha256:` hash of its secret.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub secret_hash: Option<String>,
}

/// Whether `s` is a valid resource indicator (RFC 8707 §2: absolute URI, no fragment).
pub fn is_valid_identifier(s: &str) -> bool {
    s.len() <= 512
        && !s.contains('#')
        && url::Url::parse(s).is_ok_and(|u| !u.cannot_be_a_base() || u.scheme() == "urn")
}

/// Picks the audience for a token: the requested `resource`, or the agent's default.
pub fn select<'a>(
    requested: Option<&str>,
    agent: &Agent,
    registry: &'a [ResourceServer],
) -> Result<&'a ResourceServer, OAuthError> {
    let wanted = match requested {
        Some(r) => {
            if !is_valid_identifier(r) {
                return Err(OAuthError::InvalidTarget(
                    "resource must be an absolute URI without a fragment".into(),
                ));
            }
            r
        }
        None => agent.default_resource.as_deref().ok_or_else(|| {
            OAuthError::InvalidTarget(
                "resource is required: this agent has no default resource".into(),
            )
        })?,
    };
    let found = registry
        .iter()
        .find(|r| r.identifier == wanted)
        .ok_or_else(|| OAuthError::InvalidTarget("unknown resource".into()))?;
    if !agent.allowed_resources.is_empty() && !agent.allowed_resources.iter().any(|a| a == wanted) {
        return Err(OAuthError::InvalidTarget(
            "this agent may not obtain tokens for that resource".into(),
        ));
    }
    Ok(found)
}

/// Checks that every requested scope is one the resource accepts.
pub fn check_scopes(resource: &ResourceServer, scopes: &ScopeSet) -> Result<(), OAuthError> {
    let outside = scopes.difference(&resource.scopes);
    if outside.is_empty() {
        Ok(())
    } else {
        Err(OAuthError::InvalidScope(
            format!("the resource does not accept scope `{outside}`").into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientKind, GrantType};

    fn agent(default: Option<&str>, allowed: &[&str]) -> Agent {
        Agent {
            client_id: "a".into(),
            name: "A".into(),
            kind: ClientKind::Public,
            secret_hash: None,
            redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            max_scopes: ScopeSet::parse("x").unwrap(),
            tenant_id: None,
            access_token_ttl: 900,
            refresh_token_ttl: 3600,
            default_resource: default.map(Into::into),
            allowed_resources: allowed.iter().map(|s| s.to_string()).collect(),
            disabled: false,
        }
    }

    fn registry() -> Vec<ResourceServer> {
        vec![ResourceServer {
            identifier: "https://crm.example".into(),
            name: "CRM".into(),
            scopes: ScopeSet::parse("contacts.read contacts.write").unwrap(),
            client_id: None,
            secret_hash: None,
        }]
    }

    #[test]
    fn selection_cases() {
        let reg = registry();
        let cases: &[(Option<&str>, Agent, bool, &str)] = &[
            (
                Some("https://crm.example"),
                agent(None, &[]),
                true,
                "registered",
            ),
            (
                None,
                agent(Some("https://crm.example"), &[]),
                true,
                "agent default",
            ),
            (None, agent(None, &[]), false, "no resource, no default"),
            (
                Some("https://other.example"),
                agent(None, &[]),
                false,
                "unknown",
            ),
            (
                Some("https://crm.example#x"),
                agent(None, &[]),
                false,
                "fragment",
            ),
            (Some("not a uri"), agent(None, &[]), false, "relative"),
            (
                Some("https://crm.example"),
                agent(None, &["https://billing.example"]),
                false,
                "not in the agent's allow-list",
            ),
        ];
        for (requested, agent, ok, reason) in cases {
            let got = select(*requested, agent, &reg);
            assert_eq!(got.is_ok(), *ok, "{reason}");
            if let Err(e) = got {
                assert_eq!(e.code(), "invalid_target", "{reason}");
            }
        }
    }

    #[test]
    fn scopes_outside_the_resource_are_named() {
        let reg = registry();
        let err = check_scopes(
            &reg[0],
            &ScopeSet::parse("contacts.read billing.read").unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "invalid_scope");
        assert!(err.description().contains("billing.read"));
    }
}
