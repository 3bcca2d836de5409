//! Grants: a user's standing consent to one agent in one tenant.
//!
//! Every access and refresh token hangs off a grant, so revoking the grant is the one handle
//! that kills all of them. The rules here decide when consent must be asked again and which
//! scopes a token may carry: never more than agent maximum ∩ user approval ∩ request.

use crate::scope::ScopeSet;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub tenant_id: String,
    /// The consenting user; `None` for a service identity's own grant (client credentials).
    pub user_id: Option<String>,
    pub client_id: String,
    pub scopes: ScopeSet,
    pub purpose: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoked_reason: Option<String>,
}

impl Grant {
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// The OpenID Connect `prompt` values Mandate honours (space-delimited, so several may be set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Prompt {
    /// `none`: never show a page; fail with `login_required` / `consent_required` instead.
    pub none: bool,
    /// `login`: ask for the password again even with a session.
    pub login: bool,
    /// `consent`: show the consent page even if a grant already covers the request.
    pub consent: bool,
}

/// Whether the consent page must be shown for `requested` given the user's current grant.
pub fn needs_consent(
    existing: Option<&Grant>,
    requested: &ScopeSet,
    prompt: Prompt,
    now: Timestamp,
) -> bool {
    if prompt.consent {
        return true;
    }
    match existing {
        Some(g) if g.is_active(now) => !requested.is_subset(&g.scopes),
        _ => true,
    }
}

/// The grant's scopes after a consent decision: for the scopes this request asked about, the
/// user's answer replaces the earlier one; scopes it did not ask about keep their standing.
pub fn after_consent(
    previous: Option<&ScopeSet>,
    asked: &ScopeSet,
    approved: &ScopeSet,
) -> ScopeSet {
    let approved = approved.intersection(asked);
    match previous {
        Some(prev) => prev.difference(asked).union(&approved),
        None => approved,
    }
}

/// A token's scopes: what was asked, within what the agent may hold and the user granted.
pub fn token_scopes(requested: &ScopeSet, agent_max: &ScopeSet, granted: &ScopeSet) -> ScopeSet {
    requested.intersection(agent_max).intersection(granted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(x: &str) -> ScopeSet {
        ScopeSet::parse(x).unwrap()
    }

    fn grant(scopes: &str, revoked: bool) -> Grant {
        Grant {
            id: "g".into(),
            tenant_id: "t".into(),
            user_id: Some("u".into()),
            client_id: "c".into(),
            scopes: s(scopes),
            purpose: None,
            created_at: Timestamp::from_unix(0),
            expires_at: Some(Timestamp::from_unix(100)),
            revoked_at: revoked.then(|| Timestamp::from_unix(1)),
            revoked_reason: None,
        }
    }

    #[test]
    fn consent_cases() {
        let now = Timestamp::from_unix(10);
        let g = grant("a b", false);
        let auto = Prompt::default();
        let consent = Prompt {
            consent: true,
            ..Prompt::default()
        };
        let cases: &[(Option<&Grant>, &str, Prompt, bool, &str)] = &[
            (None, "a", auto, true, "no grant yet"),
            (Some(&g), "a", auto, false, "covered by grant"),
            (Some(&g), "a b", auto, false, "exactly covered"),
            (Some(&g), "a c", auto, true, "new scope asks again"),
            (Some(&g), "a", consent, true, "prompt=consent asks again"),
        ];
        for (existing, req, prompt, expected, reason) in cases {
            assert_eq!(
                needs_consent(*existing, &s(req), *prompt, now),
                *expected,
                "{reason}"
            );
        }
        let revoked = grant("a b", true);
        assert!(
            needs_consent(Some(&revoked), &s("a"), auto, now),
            "revoked grant"
        );
        assert!(
            needs_consent(Some(&g), &s("a"), auto, Timestamp::from_unix(100)),
            "expired grant"
        );
    }

    #[test]
    fn consent_replaces_only_what_was_asked() {
        assert_eq!(after_consent(None, &s("a b"), &s("a")), s("a"));
        assert_eq!(after_consent(Some(&s("a c")), &s("a b"), &s("b")), s("b c"));
        assert_eq!(
            after_consent(None, &s("a"), &s("a z")),
            s("a"),
            "cannot approve what was not asked"
        );
    }

    proptest! {
        #[test]
        fn token_never_exceeds_any_bound(r in "[a-e ]{0,12}", m in "[a-e ]{0,12}", g in "[a-e ]{0,12}") {
            let (r, m, g) = (s(&r), s(&m), s(&g));
            let t = token_scopes(&r, &m, &g);
            prop_assert!(t.is_subset(&r) && t.is_subset(&m) && t.is_subset(&g));
        }

        #[test]
        fn consent_never_grants_unasked_scopes(p in "[a-e ]{0,12}", asked in "[a-e ]{0,12}", ok in "[a-e ]{0,12}") {
            let (p, asked, ok) = (s(&p), s(&asked), s(&ok));
            let after = after_consent(Some(&p), &asked, &ok);
            prop_assert!(after.is_subset(&p.union(&asked)));
            prop_assert!(after.intersection(&asked).is_subset(&ok));
        }
    }
}
