//! State changes that ride a group-commit batch with their event.
//!
//! A refresh-token rotation, and the refresh family a code redemption creates, must be durable
//! before the token is returned, exactly like the token's audit event. Committed on their own,
//! they cost one durable commit per request, and on SQLite every request queued for the write
//! lock: refresh and the code exchange ran an order of magnitude below the other flows
//! (BENCHMARKS.md, "Single-use credentials and the guard"). Handed to the
//! [`crate::group_commit`] writer together with its event, a change is applied inside the
//! batch's transaction, just before the batch's events are chained. Change and event share the
//! batch's one commit, and they become durable together or not at all.
//!
//! A change may be declined: a rotation whose token another request already retired writes
//! nothing, and then its event is not written either. The caller learns that from
//! [`Written::Declined`] and decides what the request gets (the successor inside the grace
//! window, `invalid_grant` otherwise).
//!
//! Redeeming an authorization code is one change: the code is consumed (once) and the refresh
//! family the redemption issues is created and linked to it, in the same transaction as the
//! token's event. A code burnt without issuing anything (a failed redemption) is the same change
//! without a family and without an event. Both go through the writer: on SQLite a write from
//! any other connection competes with the writer's batches for the database's one write lock,
//! and a connection that finds it taken sleeps in SQLite's busy handler (1, 2, 5, 10 ... ms),
//! which is what made the code exchange's p99 hundreds of milliseconds.

use crate::model::CodeConsumption;
use mandate_core::event::NewEvent;
use mandate_core::refresh::{LiveToken, RefreshFamily};
use mandate_core::time::Timestamp;

/// A change applied in a group-commit batch, before its event.
#[derive(Debug, Clone)]
pub enum Change {
    /// Retires the family's token `retiring` if it is still live and makes `successor` the
    /// family's live token. Declined, writing nothing, if the token was already retired.
    RotateRefresh {
        family_id: String,
        retiring: Retiring,
        successor: LiveToken,
        now: Timestamp,
    },
    /// Consumes an authorization code if nobody has, and with `family`, creates that refresh
    /// family (with its live token) and records on the code that its redemption created it (so a replay of the code
    /// can revoke it). Declined, writing nothing, when the code was already consumed or does
    /// not exist; [`Outcome::consumed`] says which.
    RedeemCode {
        code_hash: String,
        now: Timestamp,
        family: Option<Box<RefreshFamily>>,
    },
}

/// The token a rotation retires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retiring {
    /// The family's live token, of this generation and hash: the row is changed only if it
    /// still holds them.
    Live { generation: u64, token_hash: String },
    /// A token stored as a row of its own (minted before families held their live token):
    /// marked used, with `successor` named as its successor, only if it is still unused.
    Legacy { token_hash: String },
}

impl Change {
    /// The row the change locks first: changes in a batch are applied in this order, so two
    /// nodes' batches touching the same rows lock them in the same order and cannot deadlock.
    pub(crate) fn lock_key(&self) -> &str {
        match self {
            Self::RotateRefresh { family_id, .. } => family_id,
            Self::RedeemCode { code_hash, .. } => code_hash,
        }
    }
}

/// One entry of a batch: an event, a change, or a change and the event that records it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub change: Option<Change>,
    pub event: Option<NewEvent>,
}

/// What became of one [`Entry`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The event's sequence number; `None` when the entry had no event or its change was
    /// declined.
    pub seq: Option<i64>,
    /// Whether the change was declined (and its event therefore not written).
    pub declined: bool,
    /// What a [`Change::RedeemCode`] found (`Fresh`: it consumed the code).
    pub consumed: Option<CodeConsumption>,
}

/// What became of one event handed to the writer with a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The change applied and the event is durable with this sequence number.
    Durable(i64),
    /// The change did not apply (see [`Change`]); nothing was written.
    Declined,
}
