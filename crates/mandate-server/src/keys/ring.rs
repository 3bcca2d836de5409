//! The signing keys every node reads from the shared database, and the rule that makes all
//! nodes agree on which one signs.
//!
//! Rotation must work while several nodes run and while resource servers cache the JWKS
//! document, so a key goes through a fixed life, decided by its stored times alone:
//!
//! 1. **pending**: created, published at `/jwks.json`, but not signing until `activates_at`,
//!    so caches have fetched it before the first token it signs exists;
//! 2. **active**: the newest key of the configured algorithm whose `activates_at` has passed
//!    signs every new token; every node reaches the same choice from the same rows;
//! 3. **superseded**: once a newer key activates, the old one still verifies and stays
//!    published for `trust_after_superseded` seconds, longer than any token it signed lives;
//! 4. **expired**: then it is dropped from verification and from the JWKS document;
//! 5. **withdrawn** (`retired_at`), at any time by an operator: a compromised key stops
//!    verifying at once, so every token it signed becomes inactive.
//!
//! Only keys whose private part opens under this node's KEK and matches the stored public key
//! are trusted: anyone able to write the database can add a row, but not a sealed one.
//!
//! [`KeyRing`] holds the current [`KeySet`] behind an `ArcSwap`: issuing a token reads it
//! without a lock, and a reload swaps the whole set at once. Keys are re-read periodically
//! (see `rotation`) and at once when a token names a `kid` this node has not loaded yet,
//! at most once a second, so a token signed by a key another node just created still verifies
//! here. Tokens already verified are remembered ([`super::verified`]) while the key that
//! verified them stays trusted.

use super::Kek;
use super::verified::VerifiedTokens;
use anyhow::Context;
use arc_swap::ArcSwap;
use mandate_core::jwt::{
    self, AccessTokenClaims, Algorithm, Jwk, JwtError, SigningKey, VerifyingKey,
};
use mandate_core::random::{self, Entropy};
use mandate_core::time::Timestamp;
use mandate_store::{Store, StoredSigningKey};
use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How keys are chosen, published and rotated (`[signing_keys]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// The algorithm new tokens are signed with.
    pub alg: Algorithm,
    /// Seconds a rotated-in key is published before it signs.
    pub publish_before_signing: u64,
    /// Seconds a superseded key still verifies and stays published.
    pub trust_after_superseded: u64,
    /// Rotate automatically when the newest key is this many seconds old.
    pub rotate_after: Option<u64>,
}

impl KeyPolicy {
    /// The defaults for `alg`: publish 10 minutes ahead (twice the JWKS `max-age`), trust a
    /// superseded key for a day, rotate every 90 days.
    pub fn new(alg: Algorithm) -> Self {
        Self {
            alg,
            publish_before_signing: 600,
            trust_after_superseded: 24 * 60 * 60,
            rotate_after: Some(90 * 24 * 60 * 60),
        }
    }
}

/// Where a stored key is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published; signs from its `activates_at`.
    Pending,
    /// Signs new tokens.
    Active,
    /// A newer key signs; this one still verifies and is published (until the time given).
    Superseded { trusted_until: Timestamp },
    /// Superseded long enough ago that no token it signed is alive: neither verifies nor is
    /// published.
    Expired,
    /// Of another algorithm than the one this server signs with: verifies, is published.
    Standby,
    /// Withdrawn by an operator: neither verifies nor is published.
    Withdrawn,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Superseded { .. } => "superseded",
            Self::Expired => "expired",
            Self::Standby => "standby",
            Self::Withdrawn => "withdrawn",
        }
    }

    /// Whether tokens signed by the key verify (and the key is in the JWKS document).
    pub fn is_trusted(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Active | Self::Superseded { .. } | Self::Standby
        )
    }
}

/// Signing order: by activation, then creation, then key id, so every node sorts alike.
fn activation_order(a: &StoredSigningKey, b: &StoredSigningKey) -> Ordering {
    (a.activates_at, a.created_at, &a.kid).cmp(&(b.activates_at, b.created_at, &b.kid))
}

/// The state of each key in `keys` at `now` under `policy`, in the same order as `keys`.
pub fn classify(keys: &[StoredSigningKey], policy: &KeyPolicy, now: Timestamp) -> Vec<KeyState> {
    let withdrawn = |k: &StoredSigningKey| k.retired_at.is_some_and(|at| at <= now);
    // The keys that take turns signing, with their places in `keys`, in signing order.
    let mut line: Vec<(usize, &StoredSigningKey)> = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.alg == policy.alg.as_str() && !withdrawn(k))
        .collect();
    line.sort_by(|a, b| activation_order(a.1, b.1));
    // The active key: the last one whose time has come, or the first if none has (a ring that
    // holds only keys created ahead of time still signs).
    let active_pos = line
        .iter()
        .rposition(|(_, k)| k.activates_at <= now)
        .unwrap_or(0);
    let mut states: Vec<KeyState> = keys
        .iter()
        .map(|k| {
            if withdrawn(k) {
                KeyState::Withdrawn
            } else {
                KeyState::Standby
            }
        })
        .collect();
    let successors = line
        .iter()
        .skip(1)
        .map(|(_, k)| Some(k.activates_at))
        .chain(std::iter::once(None));
    for (pos, (&(i, _), superseded_at)) in line.iter().zip(successors).enumerate() {
        let state = match (pos.cmp(&active_pos), superseded_at) {
            (Ordering::Greater, _) => KeyState::Pending,
            (Ordering::Less, Some(at)) => {
                let trusted_until = at.plus_seconds(policy.trust_after_superseded);
                if trusted_until > now {
                    KeyState::Superseded { trusted_until }
                } else {
                    KeyState::Expired
                }
            }
            _ => KeyState::Active,
        };
        if let Some(slot) = states.get_mut(i) {
            *slot = state;
        }
    }
    states
}

/// One consistent view of the keys: who signs (now and at each coming activation), what
/// verifies, and the JWKS document.
pub struct KeySet {
    /// The active key; it signs until the first of `pending` activates.
    active: SigningKey,
    /// The pending keys with their activation times, in activation order.
    pending: Vec<(Timestamp, SigningKey)>,
    verifiers: Vec<VerifyingKey>,
    /// Every sealed key, withdrawn and expired ones included: audit checkpoints signed long
    /// ago must still verify.
    checkpoint_verifiers: Vec<VerifyingKey>,
    jwks_json: String,
}

impl KeySet {
    /// Builds the set from stored rows. Rows that do not open under `kek` are left out (with a
    /// warning): they were not written by a node holding the KEK.
    fn build(
        stored: &[StoredSigningKey],
        kek: &Kek,
        policy: &KeyPolicy,
        now: Timestamp,
    ) -> anyhow::Result<Self> {
        let mut sealed = Vec::with_capacity(stored.len());
        for k in stored {
            match open_sealed(kek, k) {
                Some(key) => sealed.push((k, key)),
                None => tracing::warn!(
                    kid = %k.kid,
                    "ignoring a signing key that does not open under this node's key-encryption key"
                ),
            }
        }
        let rows: Vec<StoredSigningKey> = sealed.iter().map(|(k, _)| (*k).clone()).collect();
        let states = classify(&rows, policy, now);
        let mut signers = Vec::new();
        let mut verifiers = Vec::new();
        let mut checkpoint_verifiers = Vec::new();
        let mut published: Vec<Jwk> = Vec::new();
        for ((row, key), state) in sealed.into_iter().zip(states) {
            let verifier = VerifyingKey::from_jwk(key.public_jwk())
                .map_err(|e| anyhow::anyhow!("public key {} is unusable: {e}", row.kid))?;
            checkpoint_verifiers.push(verifier.clone());
            if state.is_trusted() {
                verifiers.push(verifier);
                published.push(key.public_jwk().clone());
            }
            if matches!(state, KeyState::Active | KeyState::Pending) {
                signers.push((row.activates_at, row.created_at, key));
            }
        }
        // The same order as `classify`'s, so the active key comes first.
        signers.sort_by(|a, b| (a.0, a.1, a.2.kid()).cmp(&(b.0, b.1, b.2.kid())));
        let mut signers = signers.into_iter().map(|(at, _, key)| (at, key));
        let Some((_, active)) = signers.next() else {
            anyhow::bail!("no usable {} signing key in the database", policy.alg);
        };
        let jwks_json = serde_json::to_string(&jwt::Jwks { keys: published })?;
        Ok(Self {
            active,
            pending: signers.collect(),
            verifiers,
            checkpoint_verifiers,
            jwks_json,
        })
    }

    /// The key that signs at `now`: a pending key takes over at its activation without
    /// waiting for the next reload.
    pub fn signer(&self, now: Timestamp) -> &SigningKey {
        self.pending
            .iter()
            .rev()
            .find(|(at, _)| *at <= now)
            .map_or(&self.active, |(_, key)| key)
    }

    pub fn verifiers(&self) -> &[VerifyingKey] {
        &self.verifiers
    }

    pub fn checkpoint_verifiers(&self) -> &[VerifyingKey] {
        &self.checkpoint_verifiers
    }

    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }
}

/// The private key of `k` if it opens under `kek` and matches the stored public key.
fn open_sealed(kek: &Kek, k: &StoredSigningKey) -> Option<SigningKey> {
    let alg = k.alg.parse::<Algorithm>().ok()?;
    let der = kek.open(&k.kid, &k.private_sealed).ok()?;
    let key = SigningKey::from_pkcs8(alg, k.kid.clone(), &der).ok()?;
    (serde_json::to_value(key.public_jwk()).ok()? == k.public_jwk).then_some(key)
}

/// Least time between two reloads caused by unknown key ids.
const UNKNOWN_KID_RELOAD_GAP: Duration = Duration::from_secs(1);

/// The node's view of the signing keys, reloadable while requests use it.
pub struct KeyRing {
    store: Arc<dyn Store>,
    kek: Arc<Kek>,
    policy: KeyPolicy,
    current: ArcSwap<KeySet>,
    /// When an unknown `kid` last caused a reload; held across the reload so concurrent
    /// callers wait for it instead of each reading the table.
    last_unknown_kid_reload: tokio::sync::Mutex<Option<Instant>>,
    /// Tokens whose signature was checked, by digest.
    verified: VerifiedTokens,
}

impl KeyRing {
    /// Loads the keys, first generating and storing one (active at once) if the database has
    /// no key of the policy's algorithm. Nodes starting together may each store one; they all
    /// converge on the same signer, and every one of those keys verifies everywhere. Fails if
    /// keys exist but none opens under `kek` (another node's KEK).
    pub async fn load_or_create(
        store: Arc<dyn Store>,
        kek: Arc<Kek>,
        policy: KeyPolicy,
        entropy: &dyn Entropy,
        now: Timestamp,
    ) -> anyhow::Result<Self> {
        let mut stored = store.signing_keys().await?;
        let candidates: Vec<&StoredSigningKey> = stored
            .iter()
            .filter(|k| k.alg == policy.alg.as_str() && k.retired_at.is_none_or(|at| at > now))
            .collect();
        if candidates.is_empty() {
            insert_new_key(store.as_ref(), &kek, policy.alg, entropy, now, now).await?;
            stored = store.signing_keys().await?;
        } else if !candidates.iter().any(|k| open_sealed(&kek, k).is_some()) {
            // Signing with a key of its own would make this node's tokens fail everywhere
            // else: refuse to start instead.
            anyhow::bail!(
                "none of the {} stored {} signing keys opens under this key-encryption key: \
                 is it the key the database was created with? Every node sharing a database \
                 needs the same key-encryption key file",
                candidates.len(),
                policy.alg
            );
        }
        let set = KeySet::build(&stored, &kek, &policy, now).context("loading signing keys")?;
        Ok(Self {
            store,
            kek,
            policy,
            current: ArcSwap::from_pointee(set),
            last_unknown_kid_reload: tokio::sync::Mutex::new(None),
            verified: VerifiedTokens::new(super::verified::CAPACITY),
        })
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// The current key set; cheap (an atomic reference count).
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// Signs `claims` with the key active at `now`.
    pub fn sign(&self, claims: &AccessTokenClaims, now: Timestamp) -> Result<String, JwtError> {
        self.current.load().signer(now).sign(claims)
    }

    /// Re-reads the keys from the database and swaps them in.
    pub async fn reload(&self, now: Timestamp) -> anyhow::Result<()> {
        let stored = self.store.signing_keys().await?;
        let set = KeySet::build(&stored, &self.kek, &self.policy, now)?;
        self.current.store(Arc::new(set));
        Ok(())
    }

    /// Checks an access token's structure, key and signature ([`jwt::verify`]). A `kid` this
    /// node does not know makes it re-read the keys once (at most once a second) and try again:
    /// another node may have just created that key.
    ///
    /// A token verified before is answered from the verified-token cache while the key that
    /// verified it is still trusted; `now` only decides how long a new entry may be kept.
    pub async fn verify(&self, token: &str, now: Timestamp) -> Result<AccessTokenClaims, JwtError> {
        let seen = self.current();
        let digest = VerifiedTokens::key(token);
        if let Some(claims) = self.verified.get(&digest, seen.verifiers()) {
            return Ok(claims);
        }
        match jwt::verify_with_key(token, seen.verifiers()) {
            Ok((claims, key)) => {
                self.verified.insert(digest, &claims, key, now);
                return Ok(claims);
            }
            Err(JwtError::UnknownKey) => {}
            Err(other) => return Err(other),
        }
        {
            let mut last = self.last_unknown_kid_reload.lock().await;
            let reloaded_since = !Arc::ptr_eq(&seen, &self.current());
            let due = last.is_none_or(|at| at.elapsed() >= UNKNOWN_KID_RELOAD_GAP);
            if !reloaded_since && due {
                *last = Some(Instant::now());
                if let Err(e) = self.reload(now).await {
                    tracing::warn!(error = %e, "re-reading signing keys for an unknown kid failed");
                }
            }
        }
        jwt::verify(token, self.current().verifiers())
    }

    /// Generates a key that signs from `activates_at`, stores it and reloads. Times are whole
    /// seconds, so a key may not activate in the same second as the active key did (the tie
    /// would be broken by key id, not by age): it then activates one second later.
    pub async fn add_key(
        &self,
        entropy: &dyn Entropy,
        now: Timestamp,
        activates_at: Timestamp,
    ) -> anyhow::Result<StoredSigningKey> {
        let active_since = self
            .states(now)
            .await?
            .into_iter()
            .find(|(_, state)| *state == KeyState::Active)
            .map(|(k, _)| k.activates_at);
        let activates_at = match active_since {
            Some(since) if activates_at <= since => since.plus_seconds(1),
            _ => activates_at,
        };
        let stored = insert_new_key(
            self.store.as_ref(),
            &self.kek,
            self.policy.alg,
            entropy,
            now,
            activates_at,
        )
        .await?;
        self.reload(now).await?;
        Ok(stored)
    }

    /// Every stored key with its state at `now` (the rows hold no usable secret: the private
    /// part is sealed, and callers showing keys drop it).
    pub async fn states(
        &self,
        now: Timestamp,
    ) -> anyhow::Result<Vec<(StoredSigningKey, KeyState)>> {
        let stored = self.store.signing_keys().await?;
        let states = classify(&stored, &self.policy, now);
        Ok(stored.into_iter().zip(states).collect())
    }

    /// The keys an audit checkpoint may be signed with, withdrawn and expired ones included.
    pub async fn sealed_verifiers(
        store: &dyn Store,
        kek: &Kek,
    ) -> anyhow::Result<Vec<VerifyingKey>> {
        let mut verifiers = Vec::new();
        for k in store.signing_keys().await? {
            if let Some(key) = open_sealed(kek, &k)
                && let Ok(v) = VerifyingKey::from_jwk(key.public_jwk())
            {
                verifiers.push(v);
            }
        }
        Ok(verifiers)
    }
}

/// Generates a key of `alg`, seals it under the KEK and stores it.
async fn insert_new_key(
    store: &dyn Store,
    kek: &Kek,
    alg: Algorithm,
    entropy: &dyn Entropy,
    now: Timestamp,
    activates_at: Timestamp,
) -> anyhow::Result<StoredSigningKey> {
    let kid = random::identifier(entropy, now, "k_");
    let (key, der) = SigningKey::generate(alg, kid.clone())
        .map_err(|e| anyhow::anyhow!("generating a signing key: {e}"))?;
    let stored = StoredSigningKey {
        kid: kid.clone(),
        alg: alg.as_str().to_owned(),
        private_sealed: kek.seal(&kid, &der, entropy)?,
        public_jwk: serde_json::to_value(key.public_jwk())?,
        created_at: now,
        activates_at,
        retired_at: None,
    };
    store.insert_signing_key(&stored).await?;
    tracing::info!(kid = %kid, alg = %alg, activates_at = activates_at.unix(), "stored a new signing key");
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::random::SeededEntropy;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(s)
    }

    fn row(kid: &str, alg: &str, created: i64, activates: i64) -> StoredSigningKey {
        StoredSigningKey {
            kid: kid.into(),
            alg: alg.into(),
            private_sealed: vec![],
            public_jwk: serde_json::Value::Null,
            created_at: t(created),
            activates_at: t(activates),
            retired_at: None,
        }
    }

    fn policy() -> KeyPolicy {
        KeyPolicy {
            trust_after_superseded: 100,
            ..KeyPolicy::new(Algorithm::EdDSA)
        }
    }

    #[test]
    fn a_key_goes_from_pending_to_active_to_superseded_to_expired() {
        let keys = [row("k_a", "EdDSA", 0, 0), row("k_b", "EdDSA", 50, 60)];
        let at = |now| classify(&keys, &policy(), t(now));
        assert_eq!(at(10), vec![KeyState::Active, KeyState::Pending]);
        assert_eq!(
            at(60),
            vec![
                KeyState::Superseded {
                    trusted_until: t(160)
                },
                KeyState::Active
            ]
        );
        assert_eq!(at(160), vec![KeyState::Expired, KeyState::Active]);
    }

    #[test]
    fn every_node_picks_the_same_signer_whatever_order_it_read_the_rows_in() {
        // Two nodes started at once and each stored a key in the same second.
        let mut keys = vec![
            row("k_x", "EdDSA", 5, 5),
            row("k_y", "EdDSA", 5, 5),
            row("k_e", "ES256", 9, 9),
        ];
        let active = |keys: &[StoredSigningKey]| {
            let states = classify(keys, &policy(), t(6));
            keys[states.iter().position(|s| *s == KeyState::Active).unwrap()]
                .kid
                .clone()
        };
        let first = active(&keys);
        keys.reverse();
        assert_eq!(active(&keys), first);
        assert_eq!(first, "k_y");
        let states = classify(&keys, &policy(), t(6));
        assert_eq!(
            states[0],
            KeyState::Standby,
            "another algorithm still verifies"
        );
    }

    #[test]
    fn a_withdrawn_key_hands_signing_to_the_next_and_stops_verifying() {
        let mut keys = [row("k_a", "EdDSA", 0, 0), row("k_b", "EdDSA", 50, 60)];
        keys[1].retired_at = Some(t(70));
        let states = classify(&keys, &policy(), t(80));
        assert_eq!(states, vec![KeyState::Active, KeyState::Withdrawn]);
        assert!(!KeyState::Withdrawn.is_trusted());
        // Withdrawing the active key while the successor is still pending: the successor
        // signs at once rather than nothing signing.
        let mut keys = [row("k_a", "EdDSA", 0, 0), row("k_b", "EdDSA", 50, 600)];
        keys[0].retired_at = Some(t(70));
        let states = classify(&keys, &policy(), t(80));
        assert_eq!(states, vec![KeyState::Withdrawn, KeyState::Active]);
    }

    async fn sqlite_ring(policy: KeyPolicy) -> (tempfile::TempDir, Arc<dyn Store>, KeyRing) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let store = mandate_store::connect(&url).await.unwrap();
        let kek = Arc::new(Kek::from_bytes(&[7; 32]).unwrap());
        let ring =
            KeyRing::load_or_create(store.clone(), kek, policy, &SeededEntropy::new(5), t(1_000))
                .await
                .unwrap();
        (dir, store, ring)
    }

    #[tokio::test]
    async fn a_rotated_key_is_published_first_then_signs_at_its_time() {
        let (_dir, _store, ring) = sqlite_ring(policy()).await;
        let old_kid = ring.current().signer(t(1_000)).kid().to_owned();
        let new = ring
            .add_key(&SeededEntropy::new(6), t(1_010), t(1_100))
            .await
            .unwrap();
        let set = ring.current();
        assert!(
            set.jwks_json().contains(&new.kid),
            "published before it signs"
        );
        assert!(set.jwks_json().contains(&old_kid));
        assert_eq!(set.signer(t(1_099)).kid(), old_kid);
        assert_eq!(set.signer(t(1_100)).kid(), new.kid, "no reload needed");
        // A day later (past trust_after_superseded) the old key is gone from the set.
        ring.reload(t(1_300)).await.unwrap();
        let set = ring.current();
        assert!(!set.jwks_json().contains(&old_kid));
        assert_eq!(set.verifiers().len(), 1);
        assert_eq!(
            set.checkpoint_verifiers().len(),
            2,
            "checkpoints still verify"
        );
    }

    #[tokio::test]
    async fn a_node_with_another_kek_refuses_to_start_instead_of_signing_alone() {
        let (_dir, store, _ring) = sqlite_ring(policy()).await;
        let other = Arc::new(Kek::from_bytes(&[9; 32]).unwrap());
        let refused = KeyRing::load_or_create(
            store.clone(),
            other,
            policy(),
            &SeededEntropy::new(7),
            t(1_001),
        )
        .await;
        let message = format!("{:#}", refused.err().expect("a foreign KEK is refused"));
        assert!(message.contains("same key-encryption key"), "{message}");
        assert_eq!(
            store.signing_keys().await.unwrap().len(),
            1,
            "no key was added"
        );
    }

    #[tokio::test]
    async fn only_keys_sealed_under_the_kek_are_trusted() {
        let (_dir, store, ring) = sqlite_ring(policy()).await;
        let e = SeededEntropy::new(5);
        // Someone with write access to the database adds a key of their own, newer than the
        // real one, hoping it will sign or verify.
        let (forger, der) = SigningKey::generate(Algorithm::EdDSA, "k_forged".into()).unwrap();
        let other_kek = Kek::from_bytes(&[8; 32]).unwrap();
        store
            .insert_signing_key(&StoredSigningKey {
                kid: "k_forged".into(),
                alg: "EdDSA".into(),
                private_sealed: other_kek.seal("k_forged", &der, &e).unwrap(),
                public_jwk: serde_json::to_value(forger.public_jwk()).unwrap(),
                created_at: t(2_000),
                activates_at: t(2_000),
                retired_at: None,
            })
            .await
            .unwrap();
        ring.reload(t(2_001)).await.unwrap();
        let set = ring.current();
        let real = set.signer(t(2_001)).kid().to_owned();
        assert_ne!(real, "k_forged");
        let kids: Vec<&str> = set.verifiers().iter().map(VerifyingKey::kid).collect();
        assert_eq!(kids, vec![real.as_str()]);
        assert!(!set.jwks_json().contains("k_forged"));
        let trusted =
            KeyRing::sealed_verifiers(store.as_ref(), &Kek::from_bytes(&[7; 32]).unwrap())
                .await
                .unwrap();
        let kids: Vec<&str> = trusted.iter().map(VerifyingKey::kid).collect();
        assert_eq!(kids, vec![real.as_str()]);
        let everything = mandate_store::audit::stored_public_keys(store.as_ref())
            .await
            .unwrap();
        assert_eq!(everything.len(), 2, "the database alone would trust both");
    }
}
