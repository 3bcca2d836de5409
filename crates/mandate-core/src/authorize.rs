//! The authorization request (RFC 6749 §4.1.1 as profiled by OAuth 2.1).
//!
//! Validation happens in two phases because their failures go to different places. Until the
//! client and its redirect URI are established, nothing may be sent to the redirect URI (an
//! attacker could otherwise bounce users to a host of their choosing), so those errors are shown
//! on a page. After that, every error is reported to the client at its redirect URI with `state`
//! and `iss` (RFC 9207).

use crate::client::{Agent, GrantType};
use crate::error::OAuthError;
use crate::grant::Prompt;
use crate::params::Params;
use crate::pkce::CodeChallenge;
use crate::resource::{self, ResourceServer};
use crate::scope::ScopeSet;
use serde::{Deserialize, Serialize};

/// Longest `state` echoed back; longer values are refused rather than truncated.
pub const MAX_STATE_LEN: usize = 1024;
/// Longest stated `purpose`, in characters; longer ones are refused rather than truncated.
pub const MAX_PURPOSE_LEN: usize = 200;

/// A fully validated authorization request, ready to be shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// The redirect URI codes and errors go to (the presented one, or the sole registered one).
    pub redirect_uri: String,
    /// Whether `redirect_uri` was in the request, which makes it required at the token endpoint.
    pub redirect_uri_explicit: bool,
    /// Requested scopes already narrowed to the agent's maximum and the resource's scopes.
    pub scopes: ScopeSet,
    pub state: Option<String>,
    pub code_challenge: CodeChallenge,
    /// The audience of the tokens this request leads to.
    pub resource: String,
    pub prompt: Prompt,
    /// Why the agent asks, in its own words (`purpose`, a Mandate extension parameter): shown on
    /// the consent page as the agent's statement, kept on a new grant, and recorded in the
    /// consent and token events.
    #[serde(default)]
    pub purpose: Option<String>,
}

/// Where a failed authorization request is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The redirect URI cannot be trusted: show an error page, never redirect.
    Untrusted(OAuthError),
    /// The client is known: redirect to it with the error.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

/// The `client_id` of a request, before anything else can be checked.
pub fn client_id(params: &Params) -> Result<&str, AuthorizeError> {
    params
        .require("client_id")
        .map_err(AuthorizeError::Untrusted)
}

/// Validates an authorization request for a known agent against the registered resources.
pub fn validate(
    params: &Params,
    agent: &Agent,
    resources: &[ResourceServer],
) -> Result<AuthorizationRequest, AuthorizeError> {
    if agent.disabled {
        return Err(AuthorizeError::Untrusted(OAuthError::UnauthorizedClient(
            "this client is disabled".into(),
        )));
    }
    let (redirect_uri, redirect_uri_explicit) = match params.get("redirect_uri") {
        Some(presented) => {
            if agent.matching_redirect_uri(presented).is_none() {
                return Err(AuthorizeError::Untrusted(OAuthError::invalid_request(
                    "redirect_uri is not registered for this client",
                )));
            }
            (presented.to_owned(), true)
        }
        None => match agent.sole_redirect_uri() {
            Some(only) => (only.as_str().to_owned(), false),
            None => {
                return Err(AuthorizeError::Untrusted(OAuthError::invalid_request(
                    "redirect_uri is required",
                )));
            }
        },
    };

    let state = params.get("state");
    let fail = |error: OAuthError, state: Option<&str>| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.map(str::to_owned),
        error,
    };
    if state.is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(fail(OAuthError::invalid_request("state is too long"), None));
    }
    let fail = |error: OAuthError| fail(error, state);

    if params.contains("request") || params.contains("request_uri") {
        return Err(fail(OAuthError::invalid_request(
            "request objects are not supported",
        )));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => {
            return Err(fail(OAuthError::invalid_request(
                "response_type is required",
            )));
        }
        Some(_) => {
            return Err(fail(OAuthError::UnsupportedResponseType(
                "only response_type=code is supported".into(),
            )));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(fail(OAuthError::invalid_request(
            "only response_mode=query is supported",
        )));
    }
    if !agent.allows(GrantType::AuthorizationCode) {
        return Err(fail(OAuthError::UnauthorizedClient(
            "this client may not use the authorization code flow".into(),
        )));
    }
    let code_challenge = CodeChallenge::parse(
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    )
    .map_err(&fail)?;
    let prompt = parse_prompt(params.get("prompt")).map_err(&fail)?;
    let purpose = parse_purpose(params.get("purpose")).map_err(&fail)?;

    let requested = match params.get("scope") {
        Some(s) => ScopeSet::parse(s).map_err(|e| fail(e.into()))?,
        None => agent.max_scopes.clone(),
    };
    let resource = resource::select(params.get("resource"), agent, resources).map_err(&fail)?;
    let scopes = requested
        .intersection(&agent.max_scopes)
        .intersection(&resource.scopes);
    if scopes.is_empty() {
        return Err(fail(OAuthError::InvalidScope(
            "none of the requested scopes is available to this client at this resource".into(),
        )));
    }

    Ok(AuthorizationRequest {
        client_id: agent.client_id.clone(),
        redirect_uri,
        redirect_uri_explicit,
        scopes,
        state: state.map(str::to_owned),
        code_challenge,
        resource: resource.identifier.clone(),
        prompt,
        purpose,
    })
}

/// A stated purpose: absent or blank means none; too long or with control characters is
/// refused (it is shown to people and written to the audit log).
fn parse_purpose(value: Option<&str>) -> Result<Option<String>, OAuthError> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if text.chars().count() > MAX_PURPOSE_LEN || text.chars().any(char::is_control) {
        return Err(OAuthError::invalid_request(format!(
            "purpose must be at most {MAX_PURPOSE_LEN} characters without control characters"
        )));
    }
    Ok(Some(text.to_owned()))
}

fn parse_prompt(value: Option<&str>) -> Result<Prompt, OAuthError> {
    let mut prompt = Prompt::default();
    for v in value
        .unwrap_or_default()
        .split(' ')
        .filter(|v| !v.is_empty())
    {
        match v {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            "select_account" => {}
            _ => return Err(OAuthError::invalid_request("unsupported prompt value")),
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        ));
    }
    Ok(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientKind;
    use crate::redirect_uri::RedirectUri;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn agent() -> Agent {
        Agent {
            client_id: "cli".into(),
            name: "CLI".into(),
            kind: ClientKind::Public,
            secret_hash: None,
            redirect_uris: vec![RedirectUri::parse("http://127.0.0.1/callback").unwrap()],
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            max_scopes: ScopeSet::parse("contacts.read contacts.write").unwrap(),
            tenant_id: None,
            access_token_ttl: 900,
            refresh_token_ttl: 3600,
            default_resource: Some("http://crm".into()),
            allowed_resources: vec![],
            disabled: false,
        }
    }

    fn resources() -> Vec<ResourceServer> {
        vec![ResourceServer {
            identifier: "http://crm".into(),
            name: "CRM".into(),
            scopes: ScopeSet::parse("contacts.read contacts.write billing.read").unwrap(),
            client_id: None,
            secret_hash: None,
        }]
    }

    fn base() -> String {
        format!(
            "response_type=code&client_id=cli&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcallback\
             &code_challenge={CHALLENGE}&code_challenge_method=S256&state=xyz"
        )
    }

    fn run(query: &str) -> Result<AuthorizationRequest, AuthorizeError> {
        validate(
            &Params::parse(query.as_bytes()).unwrap(),
            &agent(),
            &resources(),
        )
    }

    #[test]
    fn valid_request_narrows_scopes_to_agent_maximum() {
        let req = run(&format!("{}&scope=contacts.read+billing.read", base())).unwrap();
        assert_eq!(req.scopes.to_string(), "contacts.read");
        assert_eq!(req.redirect_uri, "http://127.0.0.1:4000/callback");
        assert!(req.redirect_uri_explicit);
        assert_eq!(req.resource, "http://crm");
        assert_eq!(req.state.as_deref(), Some("xyz"));
    }

    #[test]
    fn rejection_cases() {
        let b = base();
        let cases: Vec<(String, &str, bool, &str)> = vec![
            (
                b.replace(
                    "redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcallback",
                    "redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
                ),
                "invalid_request",
                false,
                "unregistered redirect_uri shows a page",
            ),
            (
                b.replace("&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcallback", ""),
                "invalid_request",
                false,
                "loopback registration needs an explicit redirect_uri",
            ),
            (
                b.replace("response_type=code", "response_type=token"),
                "unsupported_response_type",
                true,
                "implicit grant",
            ),
            (
                b.replace("response_type=code&", ""),
                "invalid_request",
                true,
                "missing response_type",
            ),
            (
                b.replace("&code_challenge_method=S256", ""),
                "invalid_request",
                true,
                "missing method means plain",
            ),
            (
                b.replace("S256", "plain"),
                "invalid_request",
                true,
                "plain PKCE",
            ),
            (
                b.replace(&format!("&code_challenge={CHALLENGE}"), ""),
                "invalid_request",
                true,
                "missing challenge",
            ),
            (
                format!("{b}&scope=billing.read"),
                "invalid_scope",
                true,
                "only scopes beyond the maximum",
            ),
            (
                format!("{b}&scope=bad\"scope"),
                "invalid_scope",
                true,
                "malformed scope",
            ),
            (
                format!("{b}&resource=http%3A%2F%2Fother"),
                "invalid_target",
                true,
                "unknown resource",
            ),
            (
                format!("{b}&prompt=bogus"),
                "invalid_request",
                true,
                "unknown prompt",
            ),
            (
                format!("{b}&purpose={}", "x".repeat(201)),
                "invalid_request",
                true,
                "purpose too long",
            ),
            (
                format!("{b}&purpose=a%0Ab"),
                "invalid_request",
                true,
                "purpose with a line break",
            ),
            (
                format!("{b}&prompt=none+consent"),
                "invalid_request",
                true,
                "prompt none with others",
            ),
            (
                format!("{b}&request=eyJ"),
                "invalid_request",
                true,
                "request object",
            ),
            (
                format!("{b}&response_mode=fragment"),
                "invalid_request",
                true,
                "fragment response mode",
            ),
        ];
        for (query, code, redirects, reason) in cases {
            match run(&query) {
                Ok(_) => panic!("{reason}: accepted"),
                Err(AuthorizeError::Untrusted(e)) => {
                    assert!(!redirects, "{reason}: expected a redirect");
                    assert_eq!(e.code(), code, "{reason}");
                }
                Err(AuthorizeError::Redirect { error, state, .. }) => {
                    assert!(redirects, "{reason}: must not redirect");
                    assert_eq!(error.code(), code, "{reason}");
                    assert_eq!(state.as_deref(), Some("xyz"), "{reason}: state echoed");
                }
            }
        }
    }

    #[test]
    fn oversized_state_is_refused_without_echo() {
        let long = "s".repeat(MAX_STATE_LEN + 1);
        match run(&base().replace("state=xyz", &format!("state={long}"))) {
            Err(AuthorizeError::Redirect { state, error, .. }) => {
                assert_eq!(state, None);
                assert_eq!(error.code(), "invalid_request");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    proptest::proptest! {
        /// Whatever the query, validation never panics, and an accepted request never carries
        /// a scope beyond the agent's maximum or a redirect URI that is not registered.
        #[test]
        fn validation_never_panics_or_exceeds_registration(
            extra in "[a-z_]{1,12}=[ -~]{0,40}(&[a-z_]{1,12}=[ -~]{0,40}){0,4}",
            scope in "[a-z. ]{0,40}",
        ) {
            let query = format!("{}&scope={}&{extra}", base(), scope.replace(' ', "+"));
            let Ok(params) = Params::parse(query.as_bytes()) else { return Ok(()) };
            if let Ok(req) = validate(&params, &agent(), &resources()) {
                proptest::prop_assert!(req.scopes.is_subset(&agent().max_scopes));
                proptest::prop_assert!(agent().matching_redirect_uri(&req.redirect_uri).is_some());
                proptest::prop_assert!(!req.scopes.is_empty());
            }
        }
    }

    #[test]
    fn disabled_agent_gets_a_page() {
        let mut a = agent();
        a.disabled = true;
        let got = validate(&Params::parse(base().as_bytes()).unwrap(), &a, &resources());
        assert!(matches!(got, Err(AuthorizeError::Untrusted(_))));
    }
}
