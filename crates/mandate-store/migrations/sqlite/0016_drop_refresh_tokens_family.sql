-- No statement reads refresh_tokens by family: a token is found by its hash (the primary key),
-- its family through the join on refresh_families' key, and a family is revoked on its own
-- row. Families are never deleted, so no foreign-key check needs the index either. It cost one
-- more randomly placed index page written at every rotation and code redemption (BENCHMARKS.md,
-- "Refresh without the family index").
DROP INDEX refresh_tokens_family;
