-- Administrators list grants, agents and API keys a page at a time, newest first
-- (`created_at DESC, id DESC`, continuing after the previous page's last row). These indexes
-- hold each listing in that order, so a page reads its own rows from the cursor on instead of
-- sorting every matching row of a database that holds millions.

-- All grants (an operator without a filter), and one tenant's (a tenant admin's view).
CREATE INDEX grants_created ON grants (created_at, id);
CREATE INDEX grants_tenant_created ON grants (tenant_id, created_at, id);

-- One agent's grants within a tenant; the bulk revocation by agent and tenant uses its prefix
-- as before.
DROP INDEX grants_client;
CREATE INDEX grants_client ON grants (client_id, tenant_id, created_at, id);

-- One tenant's agents, by client id (all agents page by the primary key).
CREATE INDEX agents_tenant ON agents (tenant_id, client_id);

-- All tenants' API keys (api_keys_tenant serves one tenant's).
CREATE INDEX api_keys_created ON api_keys (created_at, id);
