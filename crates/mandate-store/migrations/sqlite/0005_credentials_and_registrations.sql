-- Issue 4: scoped API keys, dynamically registered clients, client assertion replay
-- protection, and the indexes bulk revocation needs. Keep in step with
-- migrations/postgres/0005_credentials_and_registrations.sql.

-- API keys, stored by hash. `replaces` / `replaced_by` link a rotated key and its successor.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    user_id        TEXT REFERENCES users (id),
    name           TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    hash           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    created_by     TEXT,
    expires_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    revoked_at     BIGINT,
    revoked_reason TEXT,
    revoked_by     TEXT,
    replaces       TEXT,
    replaced_by    TEXT
);
-- The authentication hot path: one unique-index lookup by hash.
CREATE UNIQUE INDEX api_keys_hash ON api_keys (hash);
-- Listing a tenant's keys newest first; tenant bulk revocation.
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at, id);
-- User bulk revocation.
CREATE INDEX api_keys_user ON api_keys (user_id) WHERE user_id IS NOT NULL;

-- Clients that registered themselves (RFC 7591) or came from a metadata document; the agent
-- row holds what every client has, this row what only these have.
CREATE TABLE client_registrations (
    client_id               TEXT PRIMARY KEY NOT NULL
                            REFERENCES agents (client_id) ON DELETE CASCADE,
    origin                  TEXT NOT NULL CHECK (origin IN ('dynamic', 'metadata_document')),
    metadata                TEXT NOT NULL,
    registration_token_hash TEXT,
    registered_at           BIGINT NOT NULL,
    first_used_at           BIGINT,
    expires_at              BIGINT
);
-- RFC 7592 requests find the client by its registration access token (NULLs may repeat).
CREATE UNIQUE INDEX client_registrations_token ON client_registrations (registration_token_hash);
-- Housekeeping finds abandoned clients without scanning the used ones.
CREATE INDEX client_registrations_abandoned ON client_registrations (expires_at)
    WHERE first_used_at IS NULL;

-- `jti`s of accepted client assertions, remembered until the assertion expires. The primary
-- key makes "insert if absent" race-free.
CREATE TABLE client_assertion_jtis (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis (expires_at);

-- Bulk revocation by user and by agent (by tenant uses grants_active, which leads with
-- tenant_id; by agent within a tenant uses grants_client).
CREATE INDEX grants_user ON grants (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX grants_client ON grants (client_id, tenant_id);
