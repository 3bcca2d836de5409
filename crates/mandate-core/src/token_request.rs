//! Token endpoint requests (RFC 6749 §4.1.3, §4.4.2, §6), one variant per grant type.
//!
//! A request that parses into [`TokenRequest`] has every parameter its grant type requires in
//! valid form; the server then only has to look facts up and call the grant's rules.

use crate::error::OAuthError;
use crate::params::Params;
use crate::pkce::CodeVerifier;
use crate::scope::ScopeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: CodeVerifier,
        resource: Option<String>,
    },
    RefreshToken {
        refresh_token: String,
        scope: Option<ScopeSet>,
        resource: Option<String>,
    },
    ClientCredentials {
        scope: Option<ScopeSet>,
        resource: Option<String>,
    },
}

/// Longest opaque credential accepted; ours are 43 characters.
const MAX_OPAQUE_LEN: usize = 512;

impl TokenRequest {
    pub fn parse(params: &Params) -> Result<Self, OAuthError> {
        let grant_type = params.require("grant_type")?;
        let resource = params.get("resource").map(str::to_owned);
        let scope = params
            .get("scope")
            .map(ScopeSet::parse)
            .transpose()
            .map_err(OAuthError::from)?;
        match grant_type {
            "authorization_code" => Ok(Self::AuthorizationCode {
                code: opaque(params, "code")?,
                redirect_uri: params.get("redirect_uri").map(str::to_owned),
                code_verifier: CodeVerifier::parse(params.require("code_verifier")?)?,
                resource,
            }),
            "refresh_token" => Ok(Self::RefreshToken {
                refresh_token: opaque(params, "refresh_token")?,
                scope,
                resource,
            }),
            "client_credentials" => Ok(Self::ClientCredentials { scope, resource }),
            "password" | "implicit" => Err(OAuthError::UnsupportedGrantType(
                "OAuth 2.1 removed this grant type".into(),
            )),
            _ => Err(OAuthError::UnsupportedGrantType(
                "supported grant types: authorization_code, refresh_token, client_credentials"
                    .into(),
            )),
        }
    }

    pub fn grant_type(&self) -> crate::client::GrantType {
        use crate::client::GrantType;
        match self {
            Self::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            Self::RefreshToken { .. } => GrantType::RefreshToken,
            Self::ClientCredentials { .. } => GrantType::ClientCredentials,
        }
    }
}

fn opaque(params: &Params, name: &str) -> Result<String, OAuthError> {
    let v = params.require(name)?;
    if v.len() > MAX_OPAQUE_LEN {
        return Err(OAuthError::InvalidGrant(
            format!("{name} is not valid").into(),
        ));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TokenRequest, OAuthError> {
        TokenRequest::parse(&Params::parse(s.as_bytes()).unwrap())
    }

    #[test]
    fn cases() {
        let v = "a".repeat(43);
        let cases: Vec<(String, Result<&str, &str>, &str)> = vec![
            (
                format!("grant_type=authorization_code&code=c&code_verifier={v}"),
                Ok("authorization_code"),
                "code",
            ),
            (
                "grant_type=refresh_token&refresh_token=r&scope=a".into(),
                Ok("refresh_token"),
                "refresh",
            ),
            (
                "grant_type=client_credentials".into(),
                Ok("client_credentials"),
                "client credentials",
            ),
            ("".into(), Err("invalid_request"), "no grant_type"),
            (
                "grant_type=password&username=u&password=p".into(),
                Err("unsupported_grant_type"),
                "password grant",
            ),
            (
                "grant_type=urn:x".into(),
                Err("unsupported_grant_type"),
                "unknown grant",
            ),
            (
                "grant_type=authorization_code&code=c".into(),
                Err("invalid_request"),
                "no verifier",
            ),
            (
                "grant_type=authorization_code&code=c&code_verifier=short".into(),
                Err("invalid_request"),
                "bad verifier",
            ),
            (
                format!("grant_type=authorization_code&code_verifier={v}"),
                Err("invalid_request"),
                "no code",
            ),
            (
                "grant_type=refresh_token".into(),
                Err("invalid_request"),
                "no refresh token",
            ),
            (
                "grant_type=client_credentials&scope=a%22b".into(),
                Err("invalid_scope"),
                "bad scope",
            ),
            (
                format!("grant_type=refresh_token&refresh_token={}", "x".repeat(600)),
                Err("invalid_grant"),
                "huge token",
            ),
        ];
        for (body, expected, reason) in cases {
            match (parse(&body), expected) {
                (Ok(r), Ok(g)) => assert_eq!(r.grant_type().as_str(), g, "{reason}"),
                (Err(e), Err(code)) => assert_eq!(e.code(), code, "{reason}"),
                (got, _) => panic!("{reason}: unexpected {got:?}"),
            }
        }
    }
}
