-- The tokens issued and refreshed under a grant are most of the log, and a user's events
-- are scattered over it: each put an entry on a random page of the user index, read and
-- written at every code exchange and refresh (BENCHMARKS.md, "Refresh families without a grant
-- index"). Those events name their grant, whose user is theirs, so a user's token events are
-- read through the user's grants and the grant index instead (sql::events::split_by_user),
-- and the user index keeps everything else. The statement that reads it repeats this
-- predicate word for word (sql::events::USER_INDEXED, checked by a test).
CREATE INDEX events_user_beyond_tokens ON events (user_id, seq)
    WHERE (action NOT IN ('token.issued', 'token.refreshed') OR grant_id IS NULL);
DROP INDEX events_user;
