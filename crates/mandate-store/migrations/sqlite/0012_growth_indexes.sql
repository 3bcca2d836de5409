-- Indexes found missing by EXPLAIN on a database of 10 million grants (BENCHMARKS.md, "Growth").
--
-- grants_active gains `id`: the newest active grant of a user for an agent is ordered by
-- (created_at DESC, id DESC), and without `id` in the index every grant of that user and agent
-- created in the same second was read and sorted (a temporary B-tree) to find the first.
DROP INDEX grants_active;
CREATE INDEX grants_active ON grants (tenant_id, user_id, client_id, created_at, id);

-- Housekeeping deletes expired rows by expiry; without these it scanned each table.
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE INDEX pending_authorizations_expiry ON pending_authorizations (expires_at);
CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
