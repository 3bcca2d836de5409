//! `authorization_code` (RFC 6749 §4.1.3 with PKCE, RFC 7636 §4.5).
//!
//! A code is presented once. The redemption reads the code, its grant and its user in one
//! statement and checks everything; then one group-commit entry consumes the code, creates the
//! refresh family and records the event, durable together. A presentation that fails a check
//! burns the code all the same, so a wrong `code_verifier` cannot be retried. A second
//! presentation of a used code is treated as a leak: it fails, and the grant and the refresh
//! family the first redemption produced are revoked. Two presentations racing each other are
//! settled by the consumption itself (exactly one consumes the code); the loser is a replay.

use super::{issuance_event, revoke_for_incident};
use crate::errors::ServerError;
use crate::issuance::{self, TokenSubject};
use crate::metrics::IssuedBy;
use crate::request_meta::RequestMeta;
use crate::state::AppState;
use mandate_core::OAuthError;
use mandate_core::client::{Agent, GrantType};
use mandate_core::code::{self, AuthorizationCode};
use mandate_core::event::Action;
use mandate_core::grant::{self, Grant};
use mandate_core::pkce::CodeVerifier;
use mandate_core::scope::ScopeSet;
use mandate_core::secret;
use mandate_core::time::Timestamp;
use mandate_core::token_response::TokenResponse;
use mandate_store::batch::{Change, Written};
use mandate_store::{CodeConsumption, CodeLookup};

pub struct CodeRedemption<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: &'a CodeVerifier,
    pub resource: Option<&'a str>,
}

pub async fn exchange(
    app: &AppState,
    agent: &Agent,
    req: CodeRedemption<'_>,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<TokenResponse, ServerError> {
    let code_hash = secret::hash_secret(req.code);
    let Some(found) = app.store.authorization_code(&code_hash).await? else {
        return Err(invalid("the code is invalid"));
    };
    let stored = &found.code;
    if found.consumed {
        return Err(replayed(app, agent, stored, meta, now).await);
    }
    let (grant, scopes) = match check(agent, &found, &req, now) {
        Ok(checked) => checked,
        Err(e) => {
            // Burn the code. Finding it consumed means a concurrent presentation redeemed it.
            let burnt = app.events.consume_code(&code_hash, now).await?;
            if let CodeConsumption::Replayed(_) = burnt {
                return Err(replayed(app, agent, stored, meta, now).await);
            }
            return Err(e);
        }
    };
    let subject = TokenSubject {
        agent,
        tenant_id: &stored.tenant_id,
        user_id: Some(&stored.user_id),
        grant_id: &grant.id,
        audience: &stored.resource,
        scopes: &scopes,
    };
    let minted = issuance::access_token(app, &subject, now)?;
    let event = meta.stamp(issuance_event(
        Action::TokenIssued,
        "authorization_code",
        &minted.claims,
        Some(&stored.user_id),
        grant.purpose.as_deref(),
        now,
    ));
    let (refresh, family) = if agent.allows(GrantType::RefreshToken) {
        let (token, family) = issuance::refresh_family(app.entropy.as_ref(), &subject, now);
        (Some(token), Some(Box::new(family)))
    } else {
        (None, None)
    };
    // The consumption, the family and its link to the code (so a replay can revoke it), and
    // the event ride one group commit.
    let redemption = Change::RedeemCode {
        code_hash,
        now,
        family,
    };
    if app.events.append_with(redemption, event).await? == Written::Declined {
        return Err(replayed(app, agent, stored, meta, now).await);
    }
    app.metrics
        .token_issued(IssuedBy::AuthorizationCode, &agent.client_id);
    Ok(issuance::token_response(
        &minted,
        agent.access_token_ttl,
        refresh,
    ))
}

fn invalid(why: &'static str) -> ServerError {
    OAuthError::InvalidGrant(why.into()).into()
}

/// Everything a first redemption must satisfy; the active grant and the scopes the token gets.
fn check<'a>(
    agent: &Agent,
    found: &'a CodeLookup,
    req: &CodeRedemption<'_>,
    now: Timestamp,
) -> Result<(&'a Grant, ScopeSet), ServerError> {
    code::check_redemption(
        &found.code,
        &agent.client_id,
        req.redirect_uri,
        req.code_verifier,
        req.resource,
        now,
    )?;
    let grant = found
        .grant
        .as_ref()
        .filter(|g| g.is_active(now))
        .ok_or_else(|| invalid("the grant has been revoked"))?;
    if !found.user_active {
        return Err(invalid("the user is no longer active"));
    }
    let scopes = grant::token_scopes(&found.code.scopes, &agent.max_scopes, &grant.scopes);
    if scopes.is_empty() {
        return Err(invalid("no granted scope remains"));
    }
    Ok((grant, scopes))
}

/// Answers a used code presented again: by its own client, that is a leak, and the grant (with
/// every refresh family, the first redemption's included) is revoked before the error.
async fn replayed(
    app: &AppState,
    agent: &Agent,
    code: &AuthorizationCode,
    meta: &RequestMeta,
    now: Timestamp,
) -> ServerError {
    if code.client_id == agent.client_id
        && let Err(e) = revoke_for_incident(
            app,
            &code.grant_id,
            Action::CodeReplayDetected,
            "authorization code replayed",
            meta,
            now,
        )
        .await
    {
        return e;
    }
    invalid("the code has already been used")
}
