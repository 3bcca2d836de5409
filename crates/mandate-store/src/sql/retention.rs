//! Audit retention: signed checkpoints and purging events up to one.
//!
//! A purge runs in one transaction that first takes the chain's head lock (the same
//! `UPDATE event_chain` every event append takes), so it is ordered with every writer: appends
//! wait for it or went before it, and a second purge (another node, the CLI) waits and then
//! finds the start already moved, which makes purging idempotent. Inside it the chain's start
//! moves to the checkpointed event (`start_seq`, `start_hash`) before any row is deleted,
//! because the `events_no_delete` trigger allows deleting only events up to `start_seq`; the
//! `audit.purged` event is appended last, chained like any other.

/// Records a checkpoint unless one for that event exists (the first one stays).
pub(crate) const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints \
     (seq, hash, created_at, jws) VALUES ($1, $2, $3, $4) ON CONFLICT (seq) DO NOTHING";
pub(crate) const READ_CHECKPOINT: &str =
    "SELECT seq, hash, created_at, jws FROM audit_checkpoints WHERE seq = $1";
/// Takes the head lock without reserving numbers; returns the head and the chain's start.
pub(crate) const LOCK_HEAD: &str =
    "UPDATE event_chain SET seq = seq WHERE id = 1 RETURNING seq, start_seq";
pub(crate) const MOVE_START: &str =
    "UPDATE event_chain SET start_seq = $1, start_hash = $2 WHERE id = 1";
pub(crate) const DELETE_UP_TO: &str = "DELETE FROM events WHERE seq <= $1";
/// The first chained event at or after a time: an index range scan from the chain's start,
/// over the events a purge would delete.
pub(crate) const FIRST_SINCE: &str =
    "SELECT seq FROM events WHERE seq > $1 AND at >= $2 ORDER BY seq LIMIT 1";

/// The purge cutoff: the last event before the first one at or after the cutoff time, never
/// the head (so a chain never ends at its start), never before the start.
pub(crate) fn cutoff(start_seq: i64, head: i64, first_since: Option<i64>) -> i64 {
    let newest_old = first_since.map_or(head, |s| s - 1);
    newest_old.min(head - 1).max(start_seq)
}

macro_rules! impl_retention {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::AuditRetention for $store {
            async fn event_hash(&self, seq: i64) -> $crate::StoreResult<Option<String>> {
                let hash: Option<Option<String>> =
                    ::sqlx::query_scalar($crate::sql::events::HASH_OF)
                        .bind(seq)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(hash.flatten())
            }

            async fn purge_cutoff(
                &self,
                before: ::mandate_core::time::Timestamp,
                sinks: &[String],
            ) -> $crate::StoreResult<i64> {
                let head = <Self as $crate::EventStore>::chain_head(self).await?;
                let first: Option<i64> = ::sqlx::query_scalar($crate::sql::retention::FIRST_SINCE)
                    .bind(head.start_seq)
                    .bind(before.unix())
                    .fetch_optional(&self.pool)
                    .await?;
                let mut cutoff = $crate::sql::retention::cutoff(head.start_seq, head.seq, first);
                for sink in sinks {
                    let delivered =
                        <Self as $crate::ExportCursors>::export_cursor(self, sink).await?;
                    cutoff = cutoff.min(delivered.max(head.start_seq));
                }
                Ok(cutoff)
            }

            async fn record_checkpoint(
                &self,
                checkpoint: &$crate::model::AuditCheckpoint,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let inserted = ::sqlx::query($crate::sql::retention::INSERT_CHECKPOINT)
                    .bind(checkpoint.seq)
                    .bind(&checkpoint.hash)
                    .bind(checkpoint.created_at)
                    .bind(&checkpoint.jws)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    return Ok(false);
                }
                let stored: Option<Option<String>> =
                    ::sqlx::query_scalar($crate::sql::events::HASH_OF)
                        .bind(checkpoint.seq)
                        .fetch_optional(&mut *tx)
                        .await?;
                if stored.flatten().as_deref() != Some(checkpoint.hash.as_str()) {
                    return Err($crate::StoreError::Corrupt(
                        "audit chain: the checkpointed event's hash",
                    ));
                }
                event.action = ::mandate_core::event::Action::AuditCheckpoint;
                $crate::sql::events::add_detail(
                    &mut event,
                    [
                        ("seq", ::serde_json::Value::from(checkpoint.seq)),
                        ("hash", ::serde_json::Value::from(checkpoint.hash.clone())),
                    ],
                );
                Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(true)
            }

            async fn audit_checkpoint(
                &self,
                seq: i64,
            ) -> $crate::StoreResult<Option<$crate::model::AuditCheckpoint>> {
                Ok(::sqlx::query_as($crate::sql::retention::READ_CHECKPOINT)
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn purge_events(
                &self,
                through: i64,
                mut event: ::mandate_core::event::NewEvent,
            ) -> $crate::StoreResult<Option<$crate::model::PurgedEvents>> {
                let mut tx = self.pool.begin().await?;
                let (head, start_seq): (i64, i64) =
                    ::sqlx::query_as($crate::sql::retention::LOCK_HEAD)
                        .fetch_one(&mut *tx)
                        .await?;
                if through <= start_seq {
                    return Ok(None);
                }
                if through >= head {
                    return Err($crate::StoreError::NotFound(
                        "a purge cutoff below the chain's head",
                    ));
                }
                let checkpoint: Option<$crate::model::AuditCheckpoint> =
                    ::sqlx::query_as($crate::sql::retention::READ_CHECKPOINT)
                        .bind(through)
                        .fetch_optional(&mut *tx)
                        .await?;
                let checkpoint =
                    checkpoint.ok_or($crate::StoreError::NotFound("audit checkpoint"))?;
                let stored: Option<Option<String>> =
                    ::sqlx::query_scalar($crate::sql::events::HASH_OF)
                        .bind(through)
                        .fetch_optional(&mut *tx)
                        .await?;
                if stored.flatten().as_deref() != Some(checkpoint.hash.as_str()) {
                    return Err($crate::StoreError::Corrupt(
                        "audit chain: the checkpointed event's hash",
                    ));
                }
                ::sqlx::query($crate::sql::retention::MOVE_START)
                    .bind(through)
                    .bind(&checkpoint.hash)
                    .execute(&mut *tx)
                    .await?;
                let purged = ::sqlx::query($crate::sql::retention::DELETE_UP_TO)
                    .bind(through)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                event.action = ::mandate_core::event::Action::AuditPurged;
                $crate::sql::events::add_detail(
                    &mut event,
                    [
                        ("purged", ::serde_json::Value::from(purged)),
                        ("from", ::serde_json::Value::from(start_seq + 1)),
                        ("to", ::serde_json::Value::from(through)),
                        ("checkpoint_seq", ::serde_json::Value::from(through)),
                    ],
                );
                let event_seq = Self::append_event_in(&mut tx, &event).await?;
                tx.commit().await?;
                self.events_committed();
                Ok(Some($crate::model::PurgedEvents {
                    purged,
                    from_seq: start_seq,
                    to_seq: through,
                    event_seq,
                }))
            }
        }
    };
}
pub(crate) use impl_retention;

#[cfg(test)]
mod tests {
    use super::cutoff;

    #[test]
    fn the_cutoff_never_reaches_the_head_or_goes_back() {
        // (start, head, first event at or after the time) → cutoff
        let cases = [
            ((0, 10, Some(4)), 3, "events before the first recent one"),
            ((0, 10, None), 9, "all old: everything but the head"),
            ((0, 10, Some(1)), 0, "nothing old"),
            ((5, 10, Some(6)), 5, "nothing old since the last purge"),
            ((0, 0, None), 0, "empty chain"),
            ((5, 5, None), 5, "only the start: stays"),
        ];
        for ((start, head, first), want, why) in cases {
            assert_eq!(cutoff(start, head, first), want, "{why}");
        }
    }
}
