-- Refresh tokens are kept after rotation so that presenting a used one is caught as reuse, but
-- not forever: housekeeping deletes those whose expiry lies further back than the server's
-- `refresh_token_retention_seconds`, a page at a time, in expiry order through this index.
-- Expiries grow with time, so a rotation appends to its right edge (one cached page).
CREATE INDEX IF NOT EXISTS refresh_tokens_expiry ON refresh_tokens (expires_at);
