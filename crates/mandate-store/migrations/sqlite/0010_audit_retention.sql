-- Issue 5: retention with signed checkpoints (mandate_core::audit_checkpoint). Keep in step
-- with migrations/postgres/0010_audit_retention.sql.
-- A purge moves the chain's start to a checkpointed event: start_seq becomes that event's
-- number and start_hash its chain hash, which the first remaining event is chained onto; the
-- checkpoint for it is the audit_checkpoints row with seq = start_seq. Events up to start_seq
-- may then be deleted, in the same transaction, and only those: the guard below replaces the
-- blanket no-delete trigger of 0002 (UPDATE stays forbidden).
ALTER TABLE event_chain ADD COLUMN start_hash TEXT;

CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY NOT NULL,
    hash       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    jws        TEXT NOT NULL
);

DROP TRIGGER events_no_delete;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
WHEN OLD.seq > (SELECT start_seq FROM event_chain WHERE id = 1)
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: only events up to the chain''s start may be deleted');
END;
