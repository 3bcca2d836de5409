-- Issue 4: who may use the admin API. Keep in step with migrations/sqlite/0006_admin_roles.sql.
-- One role per principal: a user (by id) or an agent acting as itself (by client id).
-- role 'operator' has no tenant; 'tenant_admin' names the one tenant it administers.
CREATE TABLE admin_roles (
    principal_kind TEXT NOT NULL,
    principal_id   TEXT NOT NULL,
    role           TEXT NOT NULL,
    tenant_id      TEXT REFERENCES tenants (id),
    granted_at     BIGINT NOT NULL,
    PRIMARY KEY (principal_kind, principal_id)
);
