-- Issue 5: retention with signed checkpoints (mandate_core::audit_checkpoint). Keep in step
-- with migrations/sqlite/0010_audit_retention.sql.
-- A purge moves the chain's start to a checkpointed event: start_seq becomes that event's
-- number and start_hash its chain hash, which the first remaining event is chained onto; the
-- checkpoint for it is the audit_checkpoints row with seq = start_seq. Events up to start_seq
-- may then be deleted, in the same transaction, and only those: the guard below replaces the
-- blanket row trigger of 0002 for DELETE (UPDATE and TRUNCATE stay forbidden). It checks once
-- per statement, over the deleted rows, so purging many events costs one check.
ALTER TABLE event_chain ADD COLUMN start_hash TEXT;

CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY NOT NULL,
    hash       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    jws        TEXT NOT NULL
);

DROP TRIGGER events_no_update ON events;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE FUNCTION events_delete_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM deleted
               WHERE seq > (SELECT start_seq FROM event_chain WHERE id = 1)) THEN
        RAISE EXCEPTION 'events are append-only: only events up to the chain''s start may be deleted';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_no_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION events_delete_guard();
