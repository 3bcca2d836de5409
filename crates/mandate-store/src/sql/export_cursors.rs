//! Audit export cursors: per sink, the sequence number of the last event delivered.
//!
//! Advancing is a compare-and-set from the value the sink read: an `UPDATE ... WHERE seq =
//! from` (or, for a sink that never advanced, an insert that yields to a row another node
//! inserted first unless that row still says 0). Of nodes that read the same value and deliver
//! the same batch, exactly one moves the cursor; the others see `false`, read it again and
//! carry on from there, so the cursor never moves backwards and never skips.

pub(crate) const READ: &str = "SELECT seq FROM audit_export_cursors WHERE sink = $1";
/// From a never-advanced cursor (0): insert, or take over a row that still says 0.
pub(crate) const START: &str = "INSERT INTO audit_export_cursors (sink, seq, updated_at) \
     VALUES ($1, $2, $3) ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, \
     updated_at = excluded.updated_at WHERE audit_export_cursors.seq = 0";
pub(crate) const ADVANCE: &str = "UPDATE audit_export_cursors SET seq = $3, updated_at = $4 \
     WHERE sink = $1 AND seq = $2";

macro_rules! impl_export_cursors {
    ($store:ty) => {
        #[::async_trait::async_trait]
        impl $crate::ExportCursors for $store {
            async fn export_cursor(&self, sink: &str) -> $crate::StoreResult<i64> {
                let seq: Option<i64> = ::sqlx::query_scalar($crate::sql::export_cursors::READ)
                    .bind(sink)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(seq.unwrap_or(0))
            }

            async fn advance_export_cursor(
                &self,
                sink: &str,
                from: i64,
                to: i64,
                at: ::mandate_core::time::Timestamp,
            ) -> $crate::StoreResult<bool> {
                if to <= from {
                    return Ok(false);
                }
                let done = if from == 0 {
                    ::sqlx::query($crate::sql::export_cursors::START)
                        .bind(sink)
                        .bind(to)
                        .bind(at.unix())
                        .execute(&self.pool)
                        .await?
                } else {
                    ::sqlx::query($crate::sql::export_cursors::ADVANCE)
                        .bind(sink)
                        .bind(from)
                        .bind(to)
                        .bind(at.unix())
                        .execute(&self.pool)
                        .await?
                };
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
pub(crate) use impl_export_cursors;
