-- Every statement that can end an access token's use tells every node at commit (LISTEN
-- mandate_token_state), so that a node may keep introspection's "usable" answers in memory
-- and drop them at once (mandate-store's postgres_token_state_cache). These are the four
-- tables that answer reads: a revoked token id; a grant revoked, its expiry, user or client
-- changed, or deleted; an agent or a user disabled or deleted. Whoever writes them (any node,
-- the CLI, an operator's SQL) is heard. Statement triggers: a bulk revocation of a million
-- grants notifies once. Writes that set none of these columns (a grant's scopes) and purges
-- of expired token ids (which end no token's use) fire nothing. Notifications collapse
-- within a transaction.
CREATE FUNCTION token_state_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mandate_token_state', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER revoked_tokens_notify AFTER INSERT ON revoked_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION token_state_notify();

CREATE TRIGGER grants_notify AFTER UPDATE OF revoked_at, expires_at, user_id, client_id OR DELETE
    OR TRUNCATE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION token_state_notify();

CREATE TRIGGER agents_notify AFTER UPDATE OF client_id, disabled OR DELETE OR TRUNCATE ON agents
    FOR EACH STATEMENT EXECUTE FUNCTION token_state_notify();

CREATE TRIGGER users_notify AFTER UPDATE OF id, disabled OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION token_state_notify();
