//! Revoked grants, tokens, users and agents the guard must refuse even though their tokens
//! still verify.
//!
//! Self-contained JWTs stay valid until `exp`; the revocation feed (a later slice, wire format
//! [`mandate_core::revocation::Revoked`]) tells the guard what was revoked, and this set is
//! where it writes it. Every validation, cached or not, consults it, so a revocation takes
//! effect on the next request. An entry is kept until `until` (the longest token lifetime after
//! the revocation, or the token's own `exp`); after that no affected token can still be
//! unexpired, and [`RevocationSet::purge`] may drop it. Withdrawn signing keys are the
//! exception: whoever holds such a key can sign new tokens with any `iat` and `exp`, so the set
//! remembers those key ids for as long as the guard runs.

use crate::principal::Principal;
use mandate_core::exchange::MAX_CHAIN_LEN;
use mandate_core::revocation::Revoked;
use mandate_core::time::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

/// A cut-off: tokens issued at or before `at` are refused; remembered until `until`.
///
/// Users, agents and tenants live on after a bulk revocation: a person may consent again and
/// get new tokens. So these entries refuse only tokens issued up to the revocation, by the
/// issuer's own clock on both sides (`iat` and the event's time).
#[derive(Debug, Clone, Copy)]
struct Cutoff {
    at: Timestamp,
    until: Timestamp,
}

#[derive(Debug, Default)]
struct Entries {
    /// Grant ids and token ids never come back: remembered until `until`.
    grants: HashMap<String, Timestamp>,
    tokens: HashMap<String, Timestamp>,
    users: HashMap<String, Cutoff>,
    agents: HashMap<String, Cutoff>,
    tenants: HashMap<String, Cutoff>,
    /// Keyed by `(client_id, tenant_id)`.
    agents_in_tenants: HashMap<(String, String), Cutoff>,
    /// Ids of withdrawn signing keys: never purged.
    signing_keys: HashSet<String>,
}

impl Entries {
    /// An exchanged token also dies with any grant or agent in its delegation chain (RFC 8693
    /// `act`, outermost actor first, each level optionally naming the grant it acted under).
    fn chain_refusal(&self, act: &serde_json::Value, issued_at: Timestamp) -> Option<&'static str> {
        let mut level = Some(act);
        for _ in 0..MAX_CHAIN_LEN {
            let actor = level?;
            if let Some(agent) = actor.get("sub").and_then(serde_json::Value::as_str)
                && covers(self.agents.get(agent), issued_at)
            {
                return Some("an agent in the token's delegation chain has been disabled");
            }
            if let Some(gid) = actor.get("gid").and_then(serde_json::Value::as_str)
                && self.grants.contains_key(gid)
            {
                return Some("a grant in the token's delegation chain has been revoked");
            }
            level = actor.get("act");
        }
        // Deeper than any chain the issuer signs: refuse rather than skip the rest.
        level.map(|_| "the token's delegation chain is too long")
    }

    fn is_empty(&self) -> bool {
        self.grants.is_empty()
            && self.tokens.is_empty()
            && self.users.is_empty()
            && self.agents.is_empty()
            && self.tenants.is_empty()
            && self.agents_in_tenants.is_empty()
            && self.signing_keys.is_empty()
    }

    fn len(&self) -> usize {
        self.grants.len()
            + self.tokens.len()
            + self.users.len()
            + self.agents.len()
            + self.tenants.len()
            + self.agents_in_tenants.len()
            + self.signing_keys.len()
    }

    fn purge(&mut self, now: Timestamp) {
        self.grants.retain(|_, until| *until >= now);
        self.tokens.retain(|_, until| *until >= now);
        self.users.retain(|_, c| c.until >= now);
        self.agents.retain(|_, c| c.until >= now);
        self.tenants.retain(|_, c| c.until >= now);
        self.agents_in_tenants.retain(|_, c| c.until >= now);
    }
}

/// Whether a cut-off applies to a token issued at `issued_at`.
fn covers(cutoff: Option<&Cutoff>, issued_at: Timestamp) -> bool {
    cutoff.is_some_and(|c| issued_at <= c.at)
}

/// What is revoked, each entry with the time until which it must be remembered.
#[derive(Debug, Default)]
pub struct RevocationSet {
    /// Read on every request, written only when a revocation arrives: a read-mostly lock.
    entries: RwLock<Entries>,
}

fn remember(map: &mut HashMap<String, Timestamp>, id: &str, until: Timestamp) {
    let entry = map.entry(id.to_owned()).or_insert(until);
    if *entry < until {
        *entry = until;
    }
}

/// A later cut-off and a later `until` both win.
fn cut_off<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Cutoff>,
    key: K,
    at: Timestamp,
    until: Timestamp,
) {
    let entry = map.entry(key).or_insert(Cutoff { at, until });
    entry.at = entry.at.max(at);
    entry.until = entry.until.max(until);
}

impl RevocationSet {
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses every token of grant `gid`; remembered at least until `until` (a later `until`
    /// wins).
    pub fn revoke_grant(&self, gid: &str, until: Timestamp) {
        remember(&mut self.write().grants, gid, until);
    }

    /// Refuses the token with this `jti`; `until` is normally its `exp`.
    pub fn revoke_token(&self, jti: &str, until: Timestamp) {
        remember(&mut self.write().tokens, jti, until);
    }

    /// Refuses every token whose `sub` is `user_id` issued at or before `at`.
    pub fn revoke_user(&self, user_id: &str, at: Timestamp, until: Timestamp) {
        cut_off(&mut self.write().users, user_id.to_owned(), at, until);
    }

    /// Refuses every token held by the agent `client_id` issued at or before `at`.
    pub fn revoke_agent(&self, client_id: &str, at: Timestamp, until: Timestamp) {
        cut_off(&mut self.write().agents, client_id.to_owned(), at, until);
    }

    /// Refuses every token of tenant `tenant_id` issued at or before `at`.
    pub fn revoke_tenant(&self, tenant_id: &str, at: Timestamp, until: Timestamp) {
        cut_off(&mut self.write().tenants, tenant_id.to_owned(), at, until);
    }

    /// Refuses every token the agent `client_id` holds in tenant `tenant_id` (and only
    /// there) issued at or before `at`.
    pub fn revoke_agent_in_tenant(
        &self,
        client_id: &str,
        tenant_id: &str,
        at: Timestamp,
        until: Timestamp,
    ) {
        let key = (client_id.to_owned(), tenant_id.to_owned());
        cut_off(&mut self.write().agents_in_tenants, key, at, until);
    }

    /// Refuses every token signed with the key `kid`, for as long as the guard runs.
    pub fn withdraw_signing_key(&self, kid: &str) {
        self.write().signing_keys.insert(kid.to_owned());
    }

    /// Whether the signing key `kid` was withdrawn.
    pub fn is_key_withdrawn(&self, kid: &str) -> bool {
        let e = self.read();
        !e.signing_keys.is_empty() && e.signing_keys.contains(kid)
    }

    /// Applies one revocation feed entry, made at `at`. Token revocations are kept until the
    /// token's own expiry (or `until`, if later); the others until `until`.
    pub fn apply(&self, revoked: &Revoked, at: Timestamp, until: Timestamp) {
        match revoked {
            Revoked::Grant { grant_id } => self.revoke_grant(grant_id, until),
            Revoked::Token { jti, expires_at } => {
                self.revoke_token(jti, until.max(Timestamp::from_unix(*expires_at)))
            }
            Revoked::User { user_id } => self.revoke_user(user_id, at, until),
            Revoked::Agent { client_id } => self.revoke_agent(client_id, at, until),
            Revoked::Tenant { tenant_id } => self.revoke_tenant(tenant_id, at, until),
            Revoked::AgentInTenant {
                client_id,
                tenant_id,
            } => self.revoke_agent_in_tenant(client_id, tenant_id, at, until),
            Revoked::SigningKey { kid } => self.withdraw_signing_key(kid),
        }
    }

    /// Whether grant `gid` is revoked. An entry counts until it is purged, so a revocation is
    /// never forgotten early.
    pub fn is_revoked(&self, gid: &str) -> bool {
        self.read().grants.contains_key(gid)
    }

    /// Why `principal` must be refused, if it must: its grant or its token was revoked, or
    /// it was issued before its user, agent, tenant, or agent in that tenant was revoked.
    pub fn refusal(&self, principal: &Principal) -> Option<&'static str> {
        let e = self.read();
        if e.is_empty() {
            return None;
        }
        let issued = principal.issued_at;
        if e.grants.contains_key(&principal.grant_id) {
            Some("the token's grant has been revoked")
        } else if e.tokens.contains_key(&principal.jti) {
            Some("the token has been revoked")
        } else if covers(e.users.get(&principal.subject), issued) {
            Some("the token's user has been revoked")
        } else if covers(e.agents.get(&principal.client_id), issued) {
            Some("the token's agent has been revoked")
        } else if covers(e.tenants.get(&principal.tenant), issued) {
            Some("the token's tenant has revoked its grants")
        } else if !e.agents_in_tenants.is_empty()
            && covers(
                e.agents_in_tenants
                    .get(&(principal.client_id.clone(), principal.tenant.clone())),
                issued,
            )
        {
            Some("the token's agent has been revoked in this tenant")
        } else {
            principal
                .act
                .as_ref()
                .and_then(|act| e.chain_refusal(act, issued))
        }
    }

    /// Forgets revocations whose `until` is before `now`.
    pub fn purge(&self, now: Timestamp) {
        self.write().purge(now);
    }

    /// Number of remembered revocations, all kinds together.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::scope::ScopeSet;

    fn principal() -> Principal {
        Principal {
            subject: "u_1".into(),
            tenant: "acme".into(),
            client_id: "cli".into(),
            scopes: ScopeSet::new(),
            grant_id: "g_1".into(),
            jti: "j_1".into(),
            issued_at: Timestamp::from_unix(100),
            expires_at: Timestamp::from_unix(500),
            act: None,
            api_key_id: None,
        }
    }

    #[test]
    fn a_withdrawn_signing_key_is_remembered_for_good() {
        let set = RevocationSet::new();
        assert!(!set.is_key_withdrawn("k_1"));
        set.apply(
            &Revoked::SigningKey { kid: "k_1".into() },
            Timestamp::from_unix(100),
            Timestamp::from_unix(200),
        );
        assert!(set.is_key_withdrawn("k_1"));
        assert!(!set.is_key_withdrawn("k_2"));
        assert_eq!(set.refusal(&principal()), None, "nothing else is revoked");
        set.purge(Timestamp::from_unix(10_000));
        assert!(set.is_key_withdrawn("k_1"), "never purged");
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn a_delegated_token_dies_with_any_agent_or_grant_in_its_chain() {
        let until = Timestamp::from_unix(1000);
        let mut p = principal();
        p.act = Some(serde_json::json!({
            "sub": "hop-agent",
            "act": { "sub": "svc-agent", "gid": "g_svc" }
        }));
        let set = RevocationSet::new();
        set.revoke_grant("g_other", until);
        assert_eq!(set.refusal(&p), None);
        set.revoke_grant("g_svc", until);
        assert!(
            set.refusal(&p)
                .is_some_and(|r| r.contains("delegation chain"))
        );

        let set = RevocationSet::new();
        set.revoke_agent("svc-agent", Timestamp::from_unix(200), until);
        assert!(
            set.refusal(&p)
                .is_some_and(|r| r.contains("delegation chain"))
        );

        // A chain deeper than any the issuer signs is refused once anything is revoked.
        let mut deep = serde_json::json!({ "sub": "a0" });
        for i in 1..=MAX_CHAIN_LEN {
            deep = serde_json::json!({ "sub": format!("a{i}"), "act": deep });
        }
        p.act = Some(deep);
        let set = RevocationSet::new();
        set.revoke_grant("g_other", until);
        assert!(set.refusal(&p).is_some());
    }

    #[test]
    fn revoked_grant_is_remembered_until_purged_after_its_window() {
        let set = RevocationSet::new();
        assert!(!set.is_revoked("g1"));
        set.revoke_grant("g1", Timestamp::from_unix(100));
        set.revoke_grant("g1", Timestamp::from_unix(50));
        assert!(set.is_revoked("g1"));
        assert!(!set.is_revoked("g2"));
        set.purge(Timestamp::from_unix(100));
        assert!(set.is_revoked("g1"), "kept through its until");
        set.purge(Timestamp::from_unix(101));
        assert!(!set.is_revoked("g1"));
        assert!(set.is_empty());
    }

    #[test]
    fn each_feed_kind_refuses_the_matching_principal_only() {
        let until = Timestamp::from_unix(1000);
        let cases = [
            (
                Revoked::Grant {
                    grant_id: "g_1".into(),
                },
                true,
            ),
            (
                Revoked::Grant {
                    grant_id: "g_2".into(),
                },
                false,
            ),
            (
                Revoked::Token {
                    jti: "j_1".into(),
                    expires_at: 500,
                },
                true,
            ),
            (
                Revoked::Token {
                    jti: "j_2".into(),
                    expires_at: 500,
                },
                false,
            ),
            (
                Revoked::User {
                    user_id: "u_1".into(),
                },
                true,
            ),
            (
                Revoked::User {
                    user_id: "u_2".into(),
                },
                false,
            ),
            (
                Revoked::Agent {
                    client_id: "cli".into(),
                },
                true,
            ),
            (
                Revoked::Agent {
                    client_id: "other".into(),
                },
                false,
            ),
            (
                Revoked::Tenant {
                    tenant_id: "acme".into(),
                },
                true,
            ),
            (
                Revoked::Tenant {
                    tenant_id: "globex".into(),
                },
                false,
            ),
            (
                Revoked::AgentInTenant {
                    client_id: "cli".into(),
                    tenant_id: "acme".into(),
                },
                true,
            ),
            (
                Revoked::AgentInTenant {
                    client_id: "cli".into(),
                    tenant_id: "globex".into(),
                },
                false,
            ),
            (
                Revoked::AgentInTenant {
                    client_id: "other".into(),
                    tenant_id: "acme".into(),
                },
                false,
            ),
        ];
        for (revoked, refused) in cases {
            let set = RevocationSet::new();
            assert_eq!(set.refusal(&principal()), None);
            set.apply(&revoked, Timestamp::from_unix(200), until);
            assert_eq!(set.refusal(&principal()).is_some(), refused, "{revoked:?}");
            assert_eq!(set.len(), 1);
        }
    }

    #[test]
    fn token_revocation_lasts_until_the_later_of_exp_and_until() {
        let set = RevocationSet::new();
        set.apply(
            &Revoked::Token {
                jti: "j_1".into(),
                expires_at: 500,
            },
            Timestamp::from_unix(5),
            Timestamp::from_unix(10),
        );
        set.purge(Timestamp::from_unix(400));
        assert!(set.refusal(&principal()).is_some());
        set.purge(Timestamp::from_unix(501));
        assert!(set.is_empty());
    }

    #[test]
    fn user_agent_and_tenant_revocations_spare_tokens_issued_afterwards() {
        let until = Timestamp::from_unix(1000);
        let revoked_at = Timestamp::from_unix(200);
        for revoked in [
            Revoked::User {
                user_id: "u_1".into(),
            },
            Revoked::Agent {
                client_id: "cli".into(),
            },
            Revoked::Tenant {
                tenant_id: "acme".into(),
            },
            Revoked::AgentInTenant {
                client_id: "cli".into(),
                tenant_id: "acme".into(),
            },
        ] {
            let set = RevocationSet::new();
            set.apply(&revoked, revoked_at, until);
            let mut p = principal();
            p.issued_at = revoked_at;
            assert!(
                set.refusal(&p).is_some(),
                "{revoked:?}: issued at the revocation"
            );
            p.issued_at = Timestamp::from_unix(201);
            assert_eq!(
                set.refusal(&p),
                None,
                "{revoked:?}: a new consent afterwards"
            );
        }
    }
}
