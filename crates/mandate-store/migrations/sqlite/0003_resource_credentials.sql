-- Resource servers may hold a credential (for introspection and the revocation feed).
ALTER TABLE resources ADD COLUMN client_id TEXT;
ALTER TABLE resources ADD COLUMN secret_hash TEXT;
CREATE UNIQUE INDEX resources_client_id ON resources (client_id);

-- The revocation feed reads events by action in sequence order.
CREATE INDEX events_action ON events (action, seq);
