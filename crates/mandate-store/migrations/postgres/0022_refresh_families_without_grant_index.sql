-- A refresh family is revoked with its grant without a write to the family: every lookup of a
-- family reads its grant in the same statement (FamilyLookup::revoked_at), so a revocation of a
-- grant, a user, a tenant or an agent updates grants only. Nothing else finds families by
-- grant, so the index goes: it cost a randomly placed index page written (and read first) at
-- every code exchange, the family's insert (BENCHMARKS.md, "Refresh families without a grant
-- index"). A family revoked on its own (reuse detected, a token revoked) keeps its revoked_at.
DROP INDEX refresh_families_grant;
