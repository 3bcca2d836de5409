-- The revocation feed and every node's cache invalidation follow the revocation events of the
-- log from a sequence number, on every batch commit. Through the action index that needs a
-- sort and through the primary key a scan of every token event since the reader's position,
-- which PostgreSQL's generic plan chose: a reader waiting for the next revocation re-read all
-- events written since the last one, every time it woke. This index holds only the revocation
-- events, in sequence order, so following them reads only them. The statement that uses it
-- repeats this predicate word for word (`sql::events::REVOCATIONS`, checked by a test), and
-- token events, which never match it, cost no index write.
--
-- The build reads the whole log and holds event inserts, and so token issuance on every node,
-- until it ends (0.6 s per million events measured). Not CONCURRENTLY: that waits for every
-- other transaction, including another node's migrator waiting for the migration lock, a
-- deadlock when nodes start together. An operator with a large log can build it beforehand
-- with the same statement and CONCURRENTLY; IF NOT EXISTS then makes this a no-op.
CREATE INDEX IF NOT EXISTS events_revocations ON events (seq)
    WHERE action IN ('grant.revoked', 'refresh.reuse_detected', 'code.replay_detected', 'token.revoked', 'user.disabled', 'agent.disabled', 'api_key.revoked', 'client.deleted', 'user.grants_revoked', 'tenant.grants_revoked', 'agent.grants_revoked', 'agent.tenant_grants_revoked', 'signing_key.retired');
