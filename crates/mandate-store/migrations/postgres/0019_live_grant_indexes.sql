-- Listings of live grants (the admin API's and the console's default, and the console's counts)
-- read through these: an index of the unrevoked grants only, in listing order. Through the
-- indexes of every grant (0015), a page of live grants read past every revoked grant newer
-- than them, and a tenant whose grants were mostly revoked was a scan of all of them. A
-- revocation takes the grant out of these indexes; issuing tokens does not touch them.
CREATE INDEX IF NOT EXISTS grants_live_created ON grants (created_at, id)
    WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS grants_live_tenant_created ON grants (tenant_id, created_at, id)
    WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS grants_live_client ON grants (client_id, tenant_id, created_at, id)
    WHERE revoked_at IS NULL;
