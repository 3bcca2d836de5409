//! The tamper-evident audit chain: every event's hash covers its content, its sequence number
//! and the previous event's hash, so editing, inserting or deleting a stored event breaks the
//! chain at that point, and [`Verifier`] names the first place it breaks.
//!
//! The store assigns sequence numbers and hashes together, under one lock on the chain's
//! head, in the transaction that writes the events: sequence numbers are therefore gapless
//! and in commit order, and an acknowledged event is always already chained. A gap in the
//! numbers is a deletion; a number past the recorded head is an insertion; a hash that does
//! not match its content is a modification.
//!
//! The hash is over the stored representation (the `detail` JSON exactly as stored, times as
//! unix seconds), each field length-prefixed with absent and empty kept distinct, so the
//! encoding is unambiguous and a verifier needs nothing but the rows. Precisely: SHA-256 of
//! `"mandate-audit-v1\0"` followed by, in order, the previous hash (hex text), `seq` and `at`
//! (8-byte big-endian), `action`, `actor_kind`, `actor_id`, `tenant_id`, `user_id`,
//! `client_id`, `grant_id`, `scopes`, `reason`, `ip`, `user_agent` and `detail` (UTF-8), each
//! encoded as a 0 byte when absent or as a 1 byte, its length (8-byte big-endian) and its bytes.
//!
//! What a chain alone cannot stop: someone able to write the database can recompute every
//! hash after the point they changed. Signed checkpoints ([`crate::audit_checkpoint`]: an
//! event's hash signed with the server's key, which can be kept elsewhere) close that gap, and
//! let retention delete old events: the chain then starts at a checkpointed event, and its
//! first remaining event is chained onto that event's hash instead of [`GENESIS`].

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// The "previous hash" of the first chained event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored event as the chain sees it: every column but the hash, as stored.
#[derive(Debug, Clone, Copy)]
pub struct ChainedFields<'a> {
    pub seq: i64,
    pub at: i64,
    pub action: &'a str,
    pub actor_kind: &'a str,
    pub actor_id: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    pub scopes: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The `detail` column's JSON text, byte for byte.
    pub detail: &'a str,
}

/// The hash of an event chained after `prev` (lowercase hex SHA-256).
pub fn link(prev: &str, e: &ChainedFields<'_>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"mandate-audit-v1\0");
    put(&mut ctx, Some(prev.as_bytes()));
    put(&mut ctx, Some(&e.seq.to_be_bytes()));
    put(&mut ctx, Some(&e.at.to_be_bytes()));
    put(&mut ctx, Some(e.action.as_bytes()));
    put(&mut ctx, Some(e.actor_kind.as_bytes()));
    for field in [
        e.actor_id,
        e.tenant_id,
        e.user_id,
        e.client_id,
        e.grant_id,
        e.scopes,
        e.reason,
        e.ip,
        e.user_agent,
    ] {
        put(&mut ctx, field.map(str::as_bytes));
    }
    put(&mut ctx, Some(e.detail.as_bytes()));
    hex(ctx.finish().as_ref())
}

/// Absent: one 0 byte. Present: a 1 byte, the length (8 bytes, big-endian), the bytes.
fn put(ctx: &mut digest::Context, field: Option<&[u8]>) {
    match field {
        None => ctx.update(&[0]),
        Some(bytes) => {
            ctx.update(&[1]);
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Where the chain stands: the sequence number of the last chained event (its hash is that
/// event's). `start_seq` is where the chain begins: without `start_hash`, the last event
/// written before the chain existed (0 for a database created with it), which is not covered;
/// with `start_hash`, the last event a retention purge deleted, whose hash the first remaining
/// event is chained onto and which a signed checkpoint must attest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub start_seq: i64,
    pub seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_hash: Option<String>,
}

/// The first break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Break {
    /// The event's content (or its stored hash) is not what was chained.
    #[error("event {seq} was modified: its content does not match its hash")]
    Modified { seq: i64 },
    /// Events `from..=to` are missing.
    #[error("events {from} to {to} were deleted")]
    Deleted { from: i64, to: i64 },
    /// An event the chain never recorded: numbered past the chain's head.
    #[error("event {seq} was inserted: it is past the chain's recorded head {head}")]
    Inserted { seq: i64, head: i64 },
    /// The chain starts after a purge at `seq`, but no checkpoint for that event is stored.
    #[error(
        "the chain starts at event {seq} (events up to it were purged) but no signed \
         checkpoint for event {seq} is stored"
    )]
    CheckpointMissing { seq: i64 },
    /// The checkpoint the chain starts from is not signed by any of the server's keys.
    #[error("the checkpoint for event {seq} is not validly signed: {reason}")]
    CheckpointInvalid { seq: i64, reason: String },
    /// The checkpoint is validly signed but attests another event or hash than the chain's
    /// recorded start.
    #[error(
        "the checkpoint for event {seq} disagrees with the chain's start: it attests event \
         {attested_seq} with hash {attested_hash}, the chain starts at event {seq} with hash \
         {start_hash}"
    )]
    CheckpointMismatch {
        seq: i64,
        start_hash: String,
        attested_seq: i64,
        attested_hash: String,
    },
}

/// Walks stored events in sequence order and finds the first break.
#[derive(Debug)]
pub struct Verifier {
    head: ChainHead,
    prev_seq: i64,
    prev_hash: String,
    checked: u64,
}

impl Verifier {
    pub fn new(head: ChainHead) -> Self {
        Self {
            prev_seq: head.start_seq,
            prev_hash: head
                .start_hash
                .clone()
                .unwrap_or_else(|| GENESIS.to_owned()),
            head,
            checked: 0,
        }
    }

    /// Where to start reading: events after this sequence number.
    pub fn resume_after(&self) -> i64 {
        self.prev_seq
    }

    /// Events checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// Checks the next stored event (the one after [`Self::resume_after`] in order).
    pub fn check(&mut self, e: &ChainedFields<'_>, stored_hash: Option<&str>) -> Result<(), Break> {
        if e.seq > self.head.seq {
            return Err(Break::Inserted {
                seq: e.seq,
                head: self.head.seq,
            });
        }
        if e.seq != self.prev_seq + 1 {
            return Err(Break::Deleted {
                from: self.prev_seq + 1,
                to: e.seq - 1,
            });
        }
        let expected = link(&self.prev_hash, e);
        if stored_hash != Some(expected.as_str()) {
            return Err(Break::Modified { seq: e.seq });
        }
        self.prev_seq = e.seq;
        self.prev_hash = expected;
        self.checked += 1;
        Ok(())
    }

    /// The hash of the last event checked (the chain's current hash once the walk is done).
    pub fn last_hash(&self) -> &str {
        &self.prev_hash
    }

    /// After the last stored event: the walk must have reached the head exactly.
    pub fn finish(&self) -> Result<u64, Break> {
        if self.prev_seq < self.head.seq {
            return Err(Break::Deleted {
                from: self.prev_seq + 1,
                to: self.head.seq,
            });
        }
        Ok(self.checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(seq: i64, detail: &str) -> ChainedFields<'_> {
        ChainedFields {
            seq,
            at: 1_700_000_000 + seq,
            action: "token.issued",
            actor_kind: "agent",
            actor_id: Some("svc"),
            tenant_id: Some("acme"),
            user_id: None,
            client_id: Some("svc"),
            grant_id: Some("g1"),
            scopes: Some("tickets.read"),
            reason: None,
            ip: Some("127.0.0.1"),
            user_agent: None,
            detail,
        }
    }

    /// A chain of `n` events with their stored hashes, and its head.
    fn chain(n: i64) -> (Vec<(ChainedFields<'static>, String)>, ChainHead) {
        let mut prev = GENESIS.to_owned();
        let mut rows = Vec::new();
        for seq in 1..=n {
            let f = fields(seq, "{}");
            let h = link(&prev, &f);
            prev.clone_from(&h);
            rows.push((f, h));
        }
        let head = ChainHead {
            start_seq: 0,
            seq: n,
            start_hash: None,
        };
        (rows, head)
    }

    fn verify(rows: &[(ChainedFields<'_>, String)], head: ChainHead) -> Result<u64, Break> {
        let mut v = Verifier::new(head);
        for (f, h) in rows {
            v.check(f, Some(h))?;
        }
        v.finish()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (rows, head) = chain(5);
        assert_eq!(verify(&rows, head), Ok(5));
        let empty = ChainHead {
            start_seq: 0,
            seq: 0,
            start_hash: None,
        };
        assert_eq!(verify(&[], empty), Ok(0));
    }

    #[test]
    fn each_kind_of_tampering_is_found_where_it_happened() {
        let (rows, head) = chain(5);

        let mut modified = rows.clone();
        modified[2].0.scopes = Some("billing.write");
        assert_eq!(
            verify(&modified, head.clone()),
            Err(Break::Modified { seq: 3 })
        );

        let mut rehashed = rows.clone();
        rehashed[1].1 = GENESIS.into();
        assert_eq!(
            verify(&rehashed, head.clone()),
            Err(Break::Modified { seq: 2 })
        );

        let mut deleted = rows.clone();
        deleted.remove(1);
        assert_eq!(
            verify(&deleted, head.clone()),
            Err(Break::Deleted { from: 2, to: 2 })
        );

        let truncated = &rows[..3];
        assert_eq!(
            verify(truncated, head.clone()),
            Err(Break::Deleted { from: 4, to: 5 })
        );

        let mut inserted = rows.clone();
        let extra = fields(6, "{}");
        let forged = link(&rows[4].1, &extra);
        inserted.push((extra, forged));
        assert_eq!(
            verify(&inserted, head),
            Err(Break::Inserted { seq: 6, head: 5 })
        );
    }

    /// The encoding is a format others verify against: this value was computed independently
    /// (Python's hashlib over the documented encoding), so any change to it fails here.
    #[test]
    fn the_encoding_is_stable() {
        assert_eq!(
            link(GENESIS, &fields(1, "{}")),
            "1ac38fe4142707ad44c73f6553bf9bd857b6fba2c1aa5947dbf32f8edf3221c2"
        );
    }

    #[test]
    fn absent_and_empty_fields_hash_differently() {
        let mut a = fields(1, "{}");
        let mut b = a;
        a.reason = None;
        b.reason = Some("");
        assert_ne!(link(GENESIS, &a), link(GENESIS, &b));
        // A field boundary cannot be moved: "ab" + "c" differs from "a" + "bc".
        a.ip = Some("ab");
        a.user_agent = Some("c");
        b.reason = None;
        b.ip = Some("a");
        b.user_agent = Some("bc");
        assert_ne!(link(GENESIS, &a), link(GENESIS, &b));
    }

    #[test]
    fn events_before_the_chain_are_skipped() {
        let head = ChainHead {
            start_seq: 10,
            seq: 10,
            start_hash: None,
        };
        let v = Verifier::new(head);
        assert_eq!(v.resume_after(), 10);
        assert_eq!(v.finish(), Ok(0));
    }

    #[test]
    fn after_a_purge_the_chain_continues_from_the_start_hash() {
        let (rows, _) = chain(6);
        let kept = &rows[3..];
        let purged = ChainHead {
            start_seq: 3,
            seq: 6,
            start_hash: Some(rows[2].1.clone()),
        };
        assert_eq!(verify(kept, purged.clone()), Ok(3));
        // From the genesis value instead, the first remaining event does not verify.
        let unanchored = ChainHead {
            start_hash: None,
            ..purged.clone()
        };
        assert_eq!(verify(kept, unanchored), Err(Break::Modified { seq: 4 }));
        // A start moved forward over deleted events needs the hash of the new start.
        let moved = ChainHead {
            start_seq: 4,
            ..purged
        };
        assert_eq!(verify(&rows[4..], moved), Err(Break::Modified { seq: 5 }));
    }
}
