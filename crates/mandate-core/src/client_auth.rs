//! Client authentication at the token, introspection and revocation endpoints.
//!
//! RFC 6749 §2.3: a confidential client authenticates with HTTP Basic (`client_secret_basic`) or
//! with body parameters (`client_secret_post`), never both; a public client only names itself
//! (`none`). Basic credentials are form-urlencoded before base64 (§2.3.1), which many servers
//! forget.

use crate::client::{Agent, ClientKind};
use crate::error::OAuthError;
use crate::params::Params;
use crate::secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// How the client presented itself.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    Basic { client_id: String, secret: String },
    Post { client_id: String, secret: String },
    None { client_id: String },
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.method(), self.client_id())
    }
}

impl ClientCredentials {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::None { client_id } => client_id,
        }
    }

    /// The RFC 7591 name of the method used.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::None { .. } => "none",
        }
    }

    pub fn used_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }

    /// Extracts credentials from the `Authorization` header value and the body.
    pub fn from_request(authorization: Option<&str>, params: &Params) -> Result<Self, OAuthError> {
        let body_secret = params.get("client_secret");
        let body_id = params.get("client_id");
        if let Some(header) = authorization {
            let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::InvalidClient(
                    "unsupported authentication scheme; use Basic".into(),
                ));
            }
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not Basic and client_secret together",
                ));
            }
            let (client_id, secret) = decode_basic(value.trim())?;
            if body_id.is_some_and(|b| b != client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the authenticated client",
                ));
            }
            return Ok(Self::Basic { client_id, secret });
        }
        let client_id = body_id
            .ok_or_else(|| OAuthError::InvalidClient("client authentication is required".into()))?
            .to_owned();
        Ok(match body_secret {
            Some(s) => Self::Post {
                client_id,
                secret: s.to_owned(),
            },
            None => Self::None { client_id },
        })
    }

    /// Checks these credentials against the registered agent.
    pub fn authenticate(&self, agent: &Agent) -> Result<(), OAuthError> {
        let failed = || OAuthError::InvalidClient("client authentication failed".into());
        if agent.disabled {
            return Err(failed());
        }
        match (agent.kind, self) {
            (ClientKind::Confidential, Self::Basic { secret, .. } | Self::Post { secret, .. }) => {
                let stored = agent.secret_hash.as_deref().ok_or_else(failed)?;
                if secret::verify_secret(secret, stored) {
                    Ok(())
                } else {
                    Err(failed())
                }
            }
            (ClientKind::Confidential, Self::None { .. }) => Err(OAuthError::InvalidClient(
                "this client is confidential and must authenticate".into(),
            )),
            (ClientKind::Public, Self::None { .. }) => Ok(()),
            (ClientKind::Public, _) => Err(OAuthError::InvalidClient(
                "this client is public and has no secret".into(),
            )),
        }
    }
}

fn decode_basic(value: &str) -> Result<(String, String), OAuthError> {
    let malformed = || OAuthError::InvalidClient("malformed Basic credentials".into());
    let raw = STANDARD.decode(value).map_err(|_| malformed())?;
    let text = String::from_utf8(raw).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let id = form_decode(id).ok_or_else(malformed)?;
    let secret = form_decode(secret).ok_or_else(malformed)?;
    if id.is_empty() {
        return Err(malformed());
    }
    Ok((id, secret))
}

/// `application/x-www-form-urlencoded` decoding of one value (RFC 6749 §2.3.1, Appendix B).
fn form_decode(s: &str) -> Option<String> {
    let query = format!("v={s}");
    form_urlencoded::parse(query.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::GrantType;
    use crate::scope::ScopeSet;

    fn params(s: &str) -> Params {
        Params::parse(s.as_bytes()).unwrap()
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn agent(kind: ClientKind, secret: Option<&str>) -> Agent {
        Agent {
            client_id: "svc".into(),
            name: "svc".into(),
            kind,
            secret_hash: secret.map(secret::hash_secret),
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            max_scopes: ScopeSet::new(),
            tenant_id: None,
            access_token_ttl: 1,
            refresh_token_ttl: 1,
            default_resource: None,
            allowed_resources: vec![],
            disabled: false,
        }
    }

    #[test]
    fn extraction_cases() {
        type Case<'a> = (Option<String>, &'a str, Result<&'a str, &'a str>, &'a str);
        let cases: &[Case] = &[
            (
                Some(basic("svc", "pw")),
                "",
                Ok("client_secret_basic"),
                "basic",
            ),
            (
                None,
                "client_id=svc&client_secret=pw",
                Ok("client_secret_post"),
                "post",
            ),
            (None, "client_id=cli", Ok("none"), "public"),
            (None, "", Err("invalid_client"), "nothing presented"),
            (
                Some(basic("svc", "pw")),
                "client_secret=pw",
                Err("invalid_request"),
                "two methods",
            ),
            (
                Some(basic("svc", "pw")),
                "client_id=other",
                Err("invalid_request"),
                "id mismatch",
            ),
            (
                Some("Bearer abc".into()),
                "",
                Err("invalid_client"),
                "wrong scheme",
            ),
            (
                Some("Basic !!!".into()),
                "",
                Err("invalid_client"),
                "not base64",
            ),
            (
                Some(format!("Basic {}", STANDARD.encode("nocolon"))),
                "",
                Err("invalid_client"),
                "no colon",
            ),
        ];
        for (header, body, expected, reason) in cases {
            let got = ClientCredentials::from_request(header.as_deref(), &params(body));
            match (got, expected) {
                (Ok(c), Ok(method)) => assert_eq!(c.method(), *method, "{reason}"),
                (Err(e), Err(code)) => assert_eq!(e.code(), *code, "{reason}"),
                (other, _) => panic!("{reason}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = basic("svc", "p%3Aw+d");
        let c = ClientCredentials::from_request(Some(&header), &params("")).unwrap();
        assert_eq!(
            c,
            ClientCredentials::Basic {
                client_id: "svc".into(),
                secret: "p:w d".into()
            }
        );
    }

    #[test]
    fn authentication_cases() {
        let conf = agent(ClientKind::Confidential, Some("right"));
        let public = agent(ClientKind::Public, None);
        let post = |s: &str| ClientCredentials::Post {
            client_id: "svc".into(),
            secret: s.into(),
        };
        let none = ClientCredentials::None {
            client_id: "svc".into(),
        };
        assert!(post("right").authenticate(&conf).is_ok());
        assert!(post("wrong").authenticate(&conf).is_err());
        assert!(
            none.authenticate(&conf).is_err(),
            "confidential must authenticate"
        );
        assert!(none.authenticate(&public).is_ok());
        assert!(
            post("x").authenticate(&public).is_err(),
            "public has no secret"
        );
        let mut disabled = conf.clone();
        disabled.disabled = true;
        assert!(post("right").authenticate(&disabled).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = ClientCredentials::Post {
            client_id: "svc".into(),
            secret: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
