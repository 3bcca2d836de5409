-- The revocation feed and every node's cache invalidation follow the revocation events of the
-- log from a sequence number, on every batch commit. Through the action index that needs a
-- sort and through the primary key a scan of every token event since the reader's position,
-- which PostgreSQL's generic plan chose: a reader waiting for the next revocation re-read all
-- events written since the last one, every time it woke. This index holds only the revocation
-- events, in sequence order, so following them reads only them. The statement that uses it
-- repeats this predicate word for word (`sql::events::REVOCATIONS`, checked by a test), and
-- token events, which never match it, cost no index write.
CREATE INDEX events_revocations ON events (seq)
    WHERE action IN ('grant.revoked', 'refresh.reuse_detected', 'code.replay_detected', 'token.revoked', 'user.disabled', 'agent.disabled', 'api_key.revoked', 'client.deleted', 'user.grants_revoked', 'tenant.grants_revoked', 'agent.grants_revoked', 'agent.tenant_grants_revoked', 'signing_key.retired');
