-- Issue 5: audit export to SIEMs. Keep in step with
-- migrations/sqlite/0008_audit_export_cursors.sql.
-- One row per configured export sink: the sequence number of the last event it delivered.
-- Advanced by compare-and-set only (from the value read), so nodes running the same sink can
-- neither move it backwards nor advance it twice from one read.
CREATE TABLE audit_export_cursors (
    sink       TEXT PRIMARY KEY NOT NULL,
    seq        BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
