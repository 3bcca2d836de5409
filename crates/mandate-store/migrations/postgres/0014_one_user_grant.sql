-- At most one live, non-expiring grant per user, agent and tenant. Consent creates it on a
-- user's first approval and widens or narrows it afterwards; two consents at once (two tabs,
-- or two nodes) used to create one each, and a later narrowing changed only the newest, so
-- the other kept the scopes the user had taken back. The loser of the race now meets this
-- index and updates the winner's. Grants with an expiry are not covered: none is created
-- today, and the active-grant query already prefers the newest live one.
-- Duplicates left by that race are revoked first, keeping the one every node was reading
-- (newest created_at, then largest id, as the active-grant query orders them).
UPDATE grants SET revoked_at = created_at, revoked_reason = 'duplicate user grant'
WHERE user_id IS NOT NULL AND revoked_at IS NULL AND expires_at IS NULL AND EXISTS (
    SELECT 1 FROM grants AS kept
    WHERE kept.user_id = grants.user_id AND kept.revoked_at IS NULL
      AND kept.expires_at IS NULL
      AND kept.tenant_id = grants.tenant_id AND kept.client_id = grants.client_id
      AND (kept.created_at > grants.created_at
           OR (kept.created_at = grants.created_at AND kept.id > grants.id))
);
CREATE UNIQUE INDEX grants_one_user_grant ON grants (tenant_id, user_id, client_id)
    WHERE user_id IS NOT NULL AND revoked_at IS NULL AND expires_at IS NULL;
-- As revoking a grant does at run time, its refresh families go with it.
UPDATE refresh_families SET revoked_at = (
    SELECT g.revoked_at FROM grants AS g WHERE g.id = refresh_families.grant_id
)
WHERE revoked_at IS NULL AND grant_id IN (
    SELECT id FROM grants WHERE revoked_reason = 'duplicate user grant'
);
