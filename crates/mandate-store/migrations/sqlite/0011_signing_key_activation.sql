-- Issue 7: signing-key rotation across nodes. A new key is published (JWKS) from created_at
-- and signs from activates_at, so every resource server has fetched it before the first token
-- it signs exists; every node picks the same signer from these rows alone. NULL (keys stored
-- before this migration): the key signs from created_at. retired_at now means withdrawn: the
-- key is no longer trusted nor published (see mandate-server's keys module).
ALTER TABLE signing_keys ADD COLUMN activates_at BIGINT;
