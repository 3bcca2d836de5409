-- Mandate's initial schema (SQLite). Keep in step with migrations/postgres/0001_initial.sql:
-- same tables, same columns, same names; only the column types differ by dialect.
-- Times are unix seconds (BIGINT). Lists are JSON text arrays; scope sets are space-separated.

CREATE TABLE tenants (
    id   TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    login         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL
);
CREATE INDEX users_tenant ON users (tenant_id, login);

CREATE TABLE agents (
    client_id         TEXT PRIMARY KEY NOT NULL,
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    secret_hash       TEXT,
    redirect_uris     TEXT NOT NULL,
    grant_types       TEXT NOT NULL,
    max_scopes        TEXT NOT NULL,
    tenant_id         TEXT,
    access_token_ttl  BIGINT NOT NULL,
    refresh_token_ttl BIGINT NOT NULL,
    default_resource  TEXT,
    allowed_resources TEXT NOT NULL,
    disabled          BOOLEAN NOT NULL
);

CREATE TABLE scopes (
    name        TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL,
    sensitive   BOOLEAN NOT NULL
);

CREATE TABLE resources (
    identifier TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL
);

CREATE TABLE grants (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL,
    user_id        TEXT,
    client_id      TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    purpose        TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX grants_active ON grants (tenant_id, user_id, client_id, created_at);

CREATE TABLE authorization_codes (
    code_hash             TEXT PRIMARY KEY NOT NULL,
    client_id             TEXT NOT NULL,
    grant_id              TEXT NOT NULL,
    user_id               TEXT NOT NULL,
    tenant_id             TEXT NOT NULL,
    redirect_uri          TEXT NOT NULL,
    redirect_uri_explicit BOOLEAN NOT NULL,
    code_challenge        TEXT NOT NULL,
    resource              TEXT NOT NULL,
    scopes                TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL,
    consumed_at           BIGINT,
    family_id             TEXT
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

CREATE TABLE refresh_families (
    id         TEXT PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    user_id    TEXT,
    scopes     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_families_grant ON refresh_families (grant_id);

CREATE TABLE refresh_tokens (
    token_hash     TEXT PRIMARY KEY NOT NULL,
    family_id      TEXT NOT NULL REFERENCES refresh_families (id),
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    successor_hash TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE pending_authorizations (
    id         TEXT PRIMARY KEY NOT NULL,
    request    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY NOT NULL,
    alg            TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    public_jwk     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    retired_at     BIGINT
);

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT NOT NULL,
    action     TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id   TEXT,
    tenant_id  TEXT,
    user_id    TEXT,
    client_id  TEXT,
    grant_id   TEXT,
    scopes     TEXT,
    reason     TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT NOT NULL
);
CREATE INDEX events_tenant ON events (tenant_id, seq);
CREATE INDEX events_grant ON events (grant_id, seq);
