//! Introspection's answer "this access token is usable", kept in a node's memory on PostgreSQL
//! and dropped the moment the database says something it depends on changed.
//!
//! On SQLite the answer is one statement on the asking thread, cheaper than an HTTP request. On
//! PostgreSQL it is a round trip per introspection, which held introspection at about half its
//! target (BENCHMARKS.md, "Introspection on PostgreSQL from memory"). A resource server that
//! introspects asks about the same token on every call it receives, so the answer is kept,
//! within the rules that make a cache allowed here (DESIGN.md: no in-memory state is
//! authoritative; caches are invalidated by the feed):
//!
//! - **Only `true` is kept**, for at most the cache TTL (`cache_ttl_ms`, 1 s by default: the
//!   backstop) and never past the grant's own expiry. A `false` can turn `true` again (a user
//!   enabled again) and is always asked.
//! - **Every node hears every change.** The database notifies channel [`CHANNEL`] when a
//!   statement revokes a token id, or revokes, expires, moves or deletes a grant, or disables
//!   or deletes an agent or a user (the triggers of migration 0021: the four tables the answer
//!   reads, whatever wrote them: any node, the CLI, an operator's SQL). Hearing it drops every
//!   kept answer. Revocations are rare next to introspections, so dropping everything costs
//!   little, and needs no index from grants, users or agents to tokens.
//! - **This node's own changes drop every answer before the call that made them returns**
//!   ([`TokenStateCache::change`], held across each write of those tables), so a
//!   revoke-then-introspect on one node never sees the old answer; another node sees it as
//!   soon as the notification arrives (milliseconds).
//! - **An answer read before a drop is never kept after it.** Each drop moves a generation
//!   counter; a read notes the generation before it asks the database and keeps its answer
//!   under that generation, and an answer is used only while its generation is current.
//! - **Nothing is kept or used while notifications could be missed**: before the node listens,
//!   and from the moment its listening connection is found gone until it listens again.

use quick_cache::sync::Cache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The channel migration 0021's triggers notify.
pub(crate) const CHANNEL: &str = "mandate_token_state";

/// Answers kept at most; bounds memory (about 200 bytes each) under many live tokens.
const CAPACITY: usize = 50_000;

/// One kept answer: the token `jti` is usable under this grant and client until `until` (the
/// grant's expiry, Unix seconds; `None`: the grant does not expire), while `generation` is
/// current and at most until `kept_until` (the TTL).
struct Usable {
    generation: u64,
    grant_id: Box<str>,
    client_id: Box<str>,
    until: Option<i64>,
    kept_until: Instant,
}

/// Kept answers by `jti`, and for how long each is kept. (quick_cache rather than moka: with
/// no expiry or maintenance work of its own, keeping an answer costs a miss about 1 µs, not
/// 6; BENCHMARKS.md.)
struct Kept {
    answers: Cache<String, Arc<Usable>>,
    ttl: Duration,
}

/// A node's kept answers (see the module docs); none until the server turns caching on with
/// a TTL.
#[derive(Default)]
pub(crate) struct TokenStateCache {
    entries: OnceLock<Kept>,
    /// Moved by every drop; answers kept under an older generation are not used.
    generation: AtomicU64,
    /// Whether the node is listening on [`CHANNEL`], so that it would hear a change.
    hearing: AtomicBool,
}

impl TokenStateCache {
    /// Keeps answers for `ttl` from now on (a zero TTL keeps none). The first call wins.
    pub(crate) fn enable(&self, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let _ = self.entries.get_or_init(|| Kept {
            answers: Cache::new(CAPACITY),
            ttl,
        });
    }

    /// Whether a kept answer says `jti` (of this grant and client) is usable at `now` (Unix
    /// seconds).
    pub(crate) fn holds(&self, jti: &str, grant_id: &str, client_id: &str, now: i64) -> bool {
        let Some(entries) = self.entries.get() else {
            return false;
        };
        let Some(kept) = entries.answers.get(jti) else {
            return false;
        };
        self.hearing.load(Ordering::SeqCst)
            && kept.generation == self.generation.load(Ordering::SeqCst)
            && *kept.grant_id == *grant_id
            && *kept.client_id == *client_id
            && kept.until.is_none_or(|until| until > now)
            && Instant::now() < kept.kept_until
    }

    /// The generation a read about to ask the database keeps its answer under, or `None` when
    /// its answer may not be kept (caching off, or the node not listening).
    pub(crate) fn generation(&self) -> Option<u64> {
        self.entries.get()?;
        let generation = self.generation.load(Ordering::SeqCst);
        self.hearing.load(Ordering::SeqCst).then_some(generation)
    }

    /// Keeps the answer "usable until `until`" read under `generation`.
    pub(crate) fn keep(
        &self,
        generation: u64,
        jti: &str,
        grant_id: &str,
        client_id: &str,
        until: Option<i64>,
    ) {
        if let Some(entries) = self.entries.get() {
            let usable = Usable {
                generation,
                grant_id: grant_id.into(),
                client_id: client_id.into(),
                until,
                kept_until: Instant::now() + entries.ttl,
            };
            entries.answers.insert(jti.to_owned(), Arc::new(usable));
        }
    }

    /// Makes every kept answer unusable: something they depend on changed.
    pub(crate) fn drop_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The node listens on [`CHANNEL`] (again): answers may be kept from now on.
    pub(crate) fn hearing(&self) {
        self.hearing.store(true, Ordering::SeqCst);
        self.drop_all();
    }

    /// The node's listening connection is gone: changes made meanwhile would go unheard.
    pub(crate) fn deaf(&self) {
        self.hearing.store(false, Ordering::SeqCst);
        self.drop_all();
    }

    /// Held by a write that may end tokens' use: drops every answer when it ends, committed,
    /// failed or cancelled (a write whose reply was lost may still have committed).
    pub(crate) fn change(&self) -> TokenStateChange<'_> {
        TokenStateChange(Some(self))
    }
}

/// See [`TokenStateCache::change`]. Holds nothing on SQLite, which keeps no answers.
pub(crate) struct TokenStateChange<'a>(pub(crate) Option<&'a TokenStateCache>);

impl Drop for TokenStateChange<'_> {
    fn drop(&mut self) {
        if let Some(cache) = self.0 {
            cache.drop_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn listening() -> TokenStateCache {
        let cache = TokenStateCache::default();
        cache.enable(TTL);
        cache.hearing();
        cache
    }

    fn keep_now(cache: &TokenStateCache, until: Option<i64>) {
        let generation = cache.generation().unwrap();
        cache.keep(generation, "j", "g", "c", until);
    }

    #[test]
    fn an_answer_is_kept_for_its_own_token_grant_and_client() {
        let cache = listening();
        assert!(!cache.holds("j", "g", "c", 10));
        keep_now(&cache, None);
        assert!(cache.holds("j", "g", "c", 10));
        assert!(!cache.holds("j", "other", "c", 10));
        assert!(!cache.holds("j", "g", "other", 10));
        assert!(!cache.holds("other", "g", "c", 10));
    }

    #[test]
    fn an_answer_ends_with_its_grant() {
        let cache = listening();
        keep_now(&cache, Some(100));
        assert!(cache.holds("j", "g", "c", 99));
        assert!(!cache.holds("j", "g", "c", 100));
    }

    #[tokio::test]
    async fn an_answer_is_kept_no_longer_than_the_ttl() {
        let cache = TokenStateCache::default();
        cache.enable(Duration::from_millis(50));
        cache.hearing();
        keep_now(&cache, None);
        assert!(cache.holds("j", "g", "c", 10));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!cache.holds("j", "g", "c", 10));
    }

    #[test]
    fn a_change_drops_answers_kept_before_it_and_read_before_it() {
        let cache = listening();
        keep_now(&cache, None);
        let read_before = cache.generation().unwrap();
        drop(cache.change());
        assert!(!cache.holds("j", "g", "c", 10));
        // A read that began before the change keeps its answer under a generation now gone.
        cache.keep(read_before, "j", "g", "c", None);
        assert!(!cache.holds("j", "g", "c", 10));
        keep_now(&cache, None);
        assert!(cache.holds("j", "g", "c", 10));
    }

    #[test]
    fn nothing_is_kept_or_used_while_not_listening() {
        let cache = TokenStateCache::default();
        cache.enable(TTL);
        assert_eq!(cache.generation(), None);
        cache.hearing();
        keep_now(&cache, None);
        cache.deaf();
        assert_eq!(cache.generation(), None);
        assert!(!cache.holds("j", "g", "c", 10));
        cache.hearing();
        assert!(
            !cache.holds("j", "g", "c", 10),
            "an answer from before stays dropped"
        );
    }

    #[test]
    fn caching_is_off_until_enabled_with_a_ttl() {
        let cache = TokenStateCache::default();
        cache.hearing();
        assert_eq!(cache.generation(), None);
        cache.enable(Duration::ZERO);
        assert_eq!(cache.generation(), None);
        cache.keep(cache.generation.load(Ordering::SeqCst), "j", "g", "c", None);
        assert!(!cache.holds("j", "g", "c", 10));
    }
}
