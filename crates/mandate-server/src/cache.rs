//! Short-lived read-through caches for the token endpoint's hot path.
//!
//! Issuing a client-credentials token needs the agent (to authenticate it), the resource
//! registry and the agent's service grant. Reading them from the database on every request
//! costs more than the signature itself, so they are reused for `cache_ttl_ms` (1 s by
//! default). Nothing here is authoritative: [`crate::cache_invalidation`] follows the log's
//! revocation events (any node's, within milliseconds) and drops the agents they name and
//! their service grants, and the TTL is the backstop. (Introspection's own answers are kept
//! by the store, which drops them on every change: `Store::cache_token_state`.) A cached
//! service grant is also checked where it matters: the
//! event writer declines a token's event if its grant is no longer in force when the event's
//! batch is written ([`mandate_store::group_commit::EventWriter::append_under_grant`]), so a
//! revoked grant never has a token returned under it once its revocation has committed, on
//! any node, whatever this cache holds.

use mandate_core::client::Agent;
use mandate_core::grant::Grant;
use mandate_core::resource::ResourceServer;
use mandate_store::{Store, StoreResult};
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;

/// Entries kept at most per cache; bounds memory under a flood of unknown client ids.
const CAPACITY: u64 = 10_000;

pub struct HotPathCache {
    /// `None` remembers an unknown client id, so guessing ids does not reach the database.
    agents: Option<Cache<String, Option<Arc<Agent>>>>,
    resources: Option<Cache<(), Arc<Vec<ResourceServer>>>>,
    /// Each agent's own grant in its owner tenant, by client id.
    service_grants: Option<Cache<String, Arc<Grant>>>,
}

impl HotPathCache {
    /// A cache whose entries live `ttl`; a zero TTL disables caching.
    pub fn new(ttl: Duration) -> Self {
        Self {
            agents: build(ttl, CAPACITY),
            resources: build(ttl, 1),
            service_grants: build(ttl, CAPACITY),
        }
    }

    pub async fn agent(
        &self,
        store: &dyn Store,
        client_id: &str,
    ) -> StoreResult<Option<Arc<Agent>>> {
        if let Some(hit) = self.agents.as_ref().and_then(|c| c.get(client_id)) {
            return Ok(hit);
        }
        let loaded = store.agent(client_id).await?.map(Arc::new);
        if let Some(c) = &self.agents {
            c.insert(client_id.to_owned(), loaded.clone());
        }
        Ok(loaded)
    }

    /// Drops what is cached about one client (after it registered, changed or was deleted
    /// on this node; other nodes see the change within the TTL), its service grant included.
    pub fn forget_agent(&self, client_id: &str) {
        if let Some(c) = &self.agents {
            c.invalidate(client_id);
        }
        self.forget_service_grant(client_id);
    }

    /// The agent's cached service grant, if there is one.
    pub fn service_grant(&self, client_id: &str) -> Option<Arc<Grant>> {
        self.service_grants.as_ref()?.get(client_id)
    }

    pub fn remember_service_grant(&self, grant: Arc<Grant>) {
        if let Some(c) = &self.service_grants {
            c.insert(grant.client_id.clone(), grant);
        }
    }

    /// Drops the agent's cached service grant (when the writer found it no longer in force).
    pub fn forget_service_grant(&self, client_id: &str) {
        if let Some(c) = &self.service_grants {
            c.invalidate(client_id);
        }
    }

    pub async fn resources(&self, store: &dyn Store) -> StoreResult<Arc<Vec<ResourceServer>>> {
        if let Some(hit) = self.resources.as_ref().and_then(|c| c.get(&())) {
            return Ok(hit);
        }
        let loaded = Arc::new(store.resources().await?);
        if let Some(c) = &self.resources {
            c.insert((), loaded.clone());
        }
        Ok(loaded)
    }

    /// Drops everything (when revocations may have been missed).
    pub fn forget_everything(&self) {
        if let Some(c) = &self.agents {
            c.invalidate_all();
        }
        if let Some(c) = &self.resources {
            c.invalidate_all();
        }
        if let Some(c) = &self.service_grants {
            c.invalidate_all();
        }
    }

    /// Whether caching is on (a TTL above zero).
    pub fn enabled(&self) -> bool {
        self.agents.is_some()
    }
}

fn build<K, V>(ttl: Duration, capacity: u64) -> Option<Cache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    (!ttl.is_zero()).then(|| {
        Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .build()
    })
}
