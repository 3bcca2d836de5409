-- Issue 7: at most one live service grant per agent and tenant. Nodes sharing the database
-- each create the grant on an agent's first client-credentials request; two nodes doing so at
-- once used to leave two. The loser of the race now meets this index and reads the winner's.
-- Duplicates left by that race are revoked first, keeping the one every node was reading
-- (newest created_at, then largest id, as the active-grant query orders them).
UPDATE grants SET revoked_at = created_at, revoked_reason = 'duplicate service grant'
WHERE user_id IS NULL AND revoked_at IS NULL AND EXISTS (
    SELECT 1 FROM grants AS kept
    WHERE kept.user_id IS NULL AND kept.revoked_at IS NULL
      AND kept.tenant_id = grants.tenant_id AND kept.client_id = grants.client_id
      AND (kept.created_at > grants.created_at
           OR (kept.created_at = grants.created_at AND kept.id > grants.id))
);
CREATE UNIQUE INDEX grants_one_service_grant ON grants (tenant_id, client_id)
    WHERE user_id IS NULL AND revoked_at IS NULL;
