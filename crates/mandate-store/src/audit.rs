//! Walking the stored audit chain ([`mandate_core::audit`]) to verify it, page by page, so a
//! chain of any length is checked in bounded memory.

use crate::{Store, StoreResult};
use mandate_core::audit::{Break, ChainHead, Verifier};

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
    /// The first break, if any; checking stops there.
    pub broken: Option<Break>,
}

/// Verifies the whole chain. `progress` is called after each page with the number of events
/// checked so far and the head's sequence number (the total to expect).
pub async fn verify(
    store: &dyn Store,
    mut progress: impl FnMut(u64, i64),
) -> StoreResult<Verification> {
    let head = store.chain_head().await?;
    let mut verifier = Verifier::new(head.clone());
    loop {
        let rows = store.chain_rows(verifier.resume_after(), PAGE).await?;
        for row in &rows {
            if let Err(broken) = verifier.check(&row.fields(), row.hash.as_deref()) {
                return Ok(Verification {
                    head,
                    checked: verifier.checked(),
                    last_hash: verifier.last_hash().to_owned(),
                    broken: Some(broken),
                });
            }
        }
        progress(verifier.checked(), head.seq);
        if rows.len() < PAGE as usize {
            break;
        }
    }
    let broken = verifier.finish().err();
    Ok(Verification {
        head,
        checked: verifier.checked(),
        last_hash: verifier.last_hash().to_owned(),
        broken,
    })
}
