//! Walking the stored audit chain ([`mandate_core::audit`]) to verify it, page by page, so a
//! chain of any length is checked in bounded memory. A chain whose start was moved by a
//! retention purge is verified from the signed checkpoint it starts at
//! ([`mandate_core::audit_checkpoint`]), which must verify with one of the keys given.

use crate::{Store, StoreError, StoreResult};
use mandate_core::audit::{Break, ChainHead, Verifier};
use mandate_core::audit_checkpoint::{Anchor, check_anchor};
use mandate_core::jwt::{Jwk, VerifyingKey};

/// Events read per round trip.
const PAGE: u32 = 2_000;

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub head: ChainHead,
    /// Events checked (from the first chained one).
    pub checked: u64,
    /// The hash of the last event checked: the chain's current hash when it is intact.
    pub last_hash: String,
    /// The signed checkpoint the chain starts from, after a retention purge.
    pub anchor: Option<Anchor>,
    /// The first break, if any; checking stops there.
    pub broken: Option<Break>,
}

/// Every public signing key stored in the database, retired ones included: what the JWKS
/// publishes and more. Whoever can write the database can add a key here, so a verifier that
/// has the key-encryption key (or a JWKS fetched from the server) should prefer those.
pub async fn stored_public_keys(store: &dyn Store) -> StoreResult<Vec<VerifyingKey>> {
    let mut keys = Vec::new();
    for k in store.signing_keys().await? {
        let jwk: Jwk = serde_json::from_value(k.public_jwk)
            .map_err(|_| StoreError::Corrupt("signing key's public JWK"))?;
        keys.push(
            VerifyingKey::from_jwk(&jwk)
                .map_err(|_| StoreError::Corrupt("signing key's public JWK"))?,
        );
    }
    Ok(keys)
}

/// Verifies the whole chain; a start moved by a purge must be attested by a checkpoint signed
/// with one of `keys`. `progress` is called after each page with the number of events checked
/// so far and the head's sequence number (the total to expect).
pub async fn verify(
    store: &dyn Store,
    keys: &[VerifyingKey],
    progress: impl FnMut(u64, i64),
) -> StoreResult<Verification> {
    walk(store, keys, None, progress).await
}

/// Verifies the chain from its start up to event `through` only (what a purge up to it is
/// about to delete), so a purge never signs a checkpoint over a chain already broken.
pub async fn verify_through(
    store: &dyn Store,
    keys: &[VerifyingKey],
    through: i64,
) -> StoreResult<Verification> {
    walk(store, keys, Some(through), |_, _| {}).await
}

async fn walk(
    store: &dyn Store,
    keys: &[VerifyingKey],
    through: Option<i64>,
    mut progress: impl FnMut(u64, i64),
) -> StoreResult<Verification> {
    let head = store.chain_head().await?;
    let done = |verifier: &Verifier, anchor, broken| Verification {
        head: head.clone(),
        checked: verifier.checked(),
        last_hash: verifier.last_hash().to_owned(),
        anchor,
        broken,
    };
    let mut verifier = Verifier::new(head.clone());
    let anchor = if head.start_hash.is_some() {
        let checkpoint = store.audit_checkpoint(head.start_seq).await?;
        match check_anchor(&head, checkpoint.as_ref().map(|c| c.jws.as_str()), keys) {
            Ok(anchor) => anchor,
            Err(broken) => return Ok(done(&verifier, None, Some(broken))),
        }
    } else {
        None
    };
    if let Some(through) = through {
        // Checked as if the chain ended there: rows after it are not read.
        verifier = Verifier::new(ChainHead {
            seq: through.min(head.seq),
            ..head.clone()
        });
    }
    let end = through.unwrap_or(i64::MAX);
    loop {
        let rows = store.chain_rows(verifier.resume_after(), PAGE).await?;
        for row in rows.iter().take_while(|r| r.seq <= end) {
            if let Err(broken) = verifier.check(&row.fields(), row.hash.as_deref()) {
                return Ok(done(&verifier, anchor, Some(broken)));
            }
        }
        progress(verifier.checked(), head.seq);
        if rows.len() < PAGE as usize || rows.last().is_some_and(|r| r.seq > end) {
            break;
        }
    }
    let broken = verifier.finish().err();
    Ok(done(&verifier, anchor, broken))
}
