//! The revocation feed's wire format, derived from the event log.
//!
//! Every revocation is already an event with a sequence number, so the feed needs no store of
//! its own: it is the revocation events in sequence order, and a reader that reconnects with
//! its last sequence number misses nothing. This module says which events are revocations and
//! what a resource server must do with each (reject a grant, a token id, a user, an agent, a
//! tenant, or an agent within a tenant).
//!
//! A bulk revocation (every grant of a user, a tenant, an agent, or an agent within a tenant)
//! is one event and so one entry, however many grants it revoked: resource servers match the
//! entry against the token's `sub`, `tenant` and `client_id` claims instead of learning every
//! grant id. An API key's revocation is a [`Revoked::Grant`] entry for the key id, because
//! tokens obtained with a key carry its id as `gid`. A withdrawn signing key is an entry too
//! ([`Revoked::SigningKey`]): a resource server that verifies tokens itself would otherwise keep
//! trusting a compromised key until it next fetched the JWKS.

use crate::event::{Action, Event};
use serde::{Deserialize, Serialize};

/// The event actions that revoke something, in the store's spelling.
pub const REVOCATION_ACTIONS: [Action; 13] = [
    Action::GrantRevoked,
    Action::RefreshReuseDetected,
    Action::CodeReplayDetected,
    Action::TokenRevoked,
    Action::UserDisabled,
    Action::AgentDisabled,
    Action::ApiKeyRevoked,
    Action::ClientDeleted,
    Action::UserGrantsRevoked,
    Action::TenantGrantsRevoked,
    Action::AgentGrantsRevoked,
    Action::AgentTenantGrantsRevoked,
    Action::SigningKeyRetired,
];

/// What a resource server must stop accepting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revoked {
    /// Every token whose `gid` is this grant.
    Grant { grant_id: String },
    /// The token with this `jti`, which expires at `expires_at` anyway.
    Token { jti: String, expires_at: i64 },
    /// Every token whose `sub` is this user.
    User { user_id: String },
    /// Every token whose `client_id` is this agent.
    Agent { client_id: String },
    /// Every token whose `tenant` is this tenant.
    Tenant { tenant_id: String },
    /// Every token whose `client_id` is this agent and whose `tenant` is this tenant.
    AgentInTenant {
        client_id: String,
        tenant_id: String,
    },
    /// Every token signed with the key `kid`, whenever it was issued: the key was withdrawn,
    /// and whoever holds it may sign new tokens with any claims. Kept for good.
    SigningKey { kid: String },
}

/// One feed entry: the event's sequence number (the SSE event id) and what it revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub seq: i64,
    pub at: i64,
    pub tenant: Option<String>,
    #[serde(flatten)]
    pub revoked: Revoked,
}

impl FeedEntry {
    /// The feed entry for a stored event, if it is a well-formed revocation.
    pub fn from_event(e: &Event) -> Option<Self> {
        let ev = &e.event;
        let revoked = match ev.action {
            Action::GrantRevoked
            | Action::RefreshReuseDetected
            | Action::CodeReplayDetected
            | Action::ApiKeyRevoked => Revoked::Grant {
                grant_id: ev.grant_id.clone()?,
            },
            Action::TokenRevoked => Revoked::Token {
                jti: ev.detail.get("jti")?.as_str()?.to_owned(),
                expires_at: ev.detail.get("exp")?.as_i64()?,
            },
            Action::UserDisabled | Action::UserGrantsRevoked => Revoked::User {
                user_id: ev.user_id.clone()?,
            },
            Action::AgentDisabled | Action::ClientDeleted | Action::AgentGrantsRevoked => {
                Revoked::Agent {
                    client_id: ev.client_id.clone()?,
                }
            }
            Action::TenantGrantsRevoked => Revoked::Tenant {
                tenant_id: ev.tenant_id.clone()?,
            },
            Action::AgentTenantGrantsRevoked => Revoked::AgentInTenant {
                client_id: ev.client_id.clone()?,
                tenant_id: ev.tenant_id.clone()?,
            },
            Action::SigningKeyRetired => Revoked::SigningKey {
                kid: ev.detail.get("kid")?.as_str()?.to_owned(),
            },
            _ => return None,
        };
        Some(Self {
            seq: e.seq,
            at: ev.at.unix(),
            tenant: ev.tenant_id.clone(),
            revoked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ActorKind, NewEvent};
    use crate::time::Timestamp;

    fn event(action: Action, f: impl FnOnce(&mut NewEvent)) -> Event {
        let mut e = NewEvent::new(Timestamp::from_unix(100), action, ActorKind::System);
        e.tenant_id = Some("acme".into());
        f(&mut e);
        Event { seq: 7, event: e }
    }

    #[test]
    fn revocation_events_map_to_entries() {
        let grant = event(Action::RefreshReuseDetected, |e| {
            e.grant_id = Some("g_1".into())
        });
        let entry = FeedEntry::from_event(&grant).unwrap();
        assert_eq!(
            entry.revoked,
            Revoked::Grant {
                grant_id: "g_1".into()
            }
        );
        assert_eq!(
            serde_json::to_value(&entry).unwrap(),
            serde_json::json!({"seq": 7, "at": 100, "tenant": "acme", "kind": "grant", "grant_id": "g_1"})
        );
        let token = event(Action::TokenRevoked, |e| {
            e.detail = serde_json::json!({"jti": "at_1", "exp": 900})
        });
        assert_eq!(
            FeedEntry::from_event(&token).unwrap().revoked,
            Revoked::Token {
                jti: "at_1".into(),
                expires_at: 900
            }
        );
        let user = event(Action::UserDisabled, |e| e.user_id = Some("u_1".into()));
        assert_eq!(
            FeedEntry::from_event(&user).unwrap().revoked,
            Revoked::User {
                user_id: "u_1".into()
            }
        );
        let key = event(Action::SigningKeyRetired, |e| {
            e.tenant_id = None;
            e.detail = serde_json::json!({"kid": "k_1", "alg": "EdDSA"})
        });
        let entry = FeedEntry::from_event(&key).unwrap();
        assert_eq!(
            serde_json::to_value(&entry).unwrap(),
            serde_json::json!({"seq": 7, "at": 100, "tenant": null, "kind": "signing_key", "kid": "k_1"})
        );
        let no_kid = event(Action::SigningKeyRetired, |e| {
            e.detail = serde_json::json!({})
        });
        assert_eq!(FeedEntry::from_event(&no_kid), None);
    }

    #[test]
    fn key_and_bulk_revocations_map_to_one_entry_each() {
        let key = event(Action::ApiKeyRevoked, |e| {
            e.grant_id = Some("mkid_0123".into())
        });
        assert_eq!(
            FeedEntry::from_event(&key).unwrap().revoked,
            Revoked::Grant {
                grant_id: "mkid_0123".into()
            }
        );
        let user = event(Action::UserGrantsRevoked, |e| {
            e.user_id = Some("u_1".into())
        });
        assert_eq!(
            FeedEntry::from_event(&user).unwrap().revoked,
            Revoked::User {
                user_id: "u_1".into()
            }
        );
        for action in [Action::AgentGrantsRevoked, Action::ClientDeleted] {
            let agent = event(action, |e| {
                e.tenant_id = None;
                e.client_id = Some("cli".into());
            });
            assert_eq!(
                FeedEntry::from_event(&agent).unwrap().revoked,
                Revoked::Agent {
                    client_id: "cli".into()
                }
            );
        }
        let tenant = FeedEntry::from_event(&event(Action::TenantGrantsRevoked, |_| {})).unwrap();
        assert_eq!(
            tenant.revoked,
            Revoked::Tenant {
                tenant_id: "acme".into()
            }
        );
        let scoped = event(Action::AgentTenantGrantsRevoked, |e| {
            e.client_id = Some("cli".into())
        });
        let entry = FeedEntry::from_event(&scoped).unwrap();
        assert_eq!(
            entry.revoked,
            Revoked::AgentInTenant {
                client_id: "cli".into(),
                tenant_id: "acme".into()
            }
        );
        // The entry's own `tenant` and the variant's `tenant_id` are distinct keys on the wire.
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"seq": 7, "at": 100, "tenant": "acme", "kind": "agent_in_tenant",
                "client_id": "cli", "tenant_id": "acme"})
        );
        assert_eq!(serde_json::from_value::<FeedEntry>(json).unwrap(), entry);
        for action in REVOCATION_ACTIONS {
            assert!(
                FeedEntry::from_event(&event(action, |e| {
                    e.grant_id = Some("g".into());
                    e.user_id = Some("u".into());
                    e.client_id = Some("c".into());
                    e.detail = serde_json::json!({"jti": "j", "exp": 1, "kid": "k"});
                }))
                .is_some(),
                "{action:?} is listed as a revocation, so it must yield an entry"
            );
        }
    }

    #[test]
    fn incomplete_bulk_revocations_are_not_entries() {
        let no_tenant = event(Action::TenantGrantsRevoked, |e| e.tenant_id = None);
        assert!(FeedEntry::from_event(&no_tenant).is_none());
        let no_client = event(Action::AgentTenantGrantsRevoked, |_| {});
        assert!(FeedEntry::from_event(&no_client).is_none());
        assert!(
            FeedEntry::from_event(&event(Action::ApiKeyCreated, |e| {
                e.grant_id = Some("mkid_1".into())
            }))
            .is_none()
        );
    }

    #[test]
    fn other_or_incomplete_events_are_not_entries() {
        assert!(FeedEntry::from_event(&event(Action::TokenIssued, |_| {})).is_none());
        assert!(
            FeedEntry::from_event(&event(Action::GrantRevoked, |_| {})).is_none(),
            "no grant id"
        );
        assert!(
            FeedEntry::from_event(&event(Action::TokenRevoked, |_| {})).is_none(),
            "no jti"
        );
    }
}
