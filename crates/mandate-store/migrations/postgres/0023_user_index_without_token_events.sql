-- The tokens issued and refreshed under a grant are most of the log, and a user's events
-- are scattered over it: each put an entry on a random page of the user index, read and
-- written at every code exchange and refresh (BENCHMARKS.md, "Refresh families without a grant
-- index"). Those events name their grant, whose user is theirs, so a user's token events are
-- read through the user's grants and the grant index instead (sql::events::split_by_user),
-- and the user index keeps everything else. The statement that reads it repeats this
-- predicate word for word (sql::events::USER_INDEXED, checked by a test).
--
-- The build reads the whole log and holds event inserts, and so token issuance on every node,
-- until it ends. As for 0017, an operator with a large log can build it beforehand with the
-- same statement and CONCURRENTLY; IF NOT EXISTS then makes this a no-op.
CREATE INDEX IF NOT EXISTS events_user_beyond_tokens ON events (user_id, seq)
    WHERE (action NOT IN ('token.issued', 'token.refreshed') OR grant_id IS NULL);
DROP INDEX IF EXISTS events_user;
