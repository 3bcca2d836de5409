-- Issue 5: the tamper-evident audit chain (mandate_core::audit). Keep in step with
-- migrations/postgres/0007_audit_chain.sql.
-- Each event stores its chain hash; the one-row event_chain table is the chain's head (the last
-- chained sequence number), locked by every event-writing transaction, which reserves its
-- numbers there (gapless, in commit order). Events written before this migration are not
-- chained: start_seq marks where the chain begins.
ALTER TABLE events ADD COLUMN hash TEXT;

CREATE TABLE event_chain (
    id        INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    start_seq BIGINT NOT NULL,
    seq       BIGINT NOT NULL
);
INSERT INTO event_chain (id, start_seq, seq)
SELECT 1, COALESCE(MAX(seq), 0), COALESCE(MAX(seq), 0) FROM events;
