-- A refresh family holds its live token: the generation and hash of the one token that may be
-- rotated now. A token names its family and generation (`<family>.<generation>.<secret>`), so
-- a rotation is an in-place update of this row instead of a new row in refresh_tokens (a
-- random leaf of its hash index) and an update of the old one (another). A retired token is
-- recognised by deriving its successors up to the live one (mandate_core::refresh).
-- refresh_tokens keeps the tokens minted before this change, still honoured; the first
-- rotation of one fills these columns for its family. All four are set or all are null.
ALTER TABLE refresh_families ADD COLUMN live_generation BIGINT;
ALTER TABLE refresh_families ADD COLUMN live_hash TEXT;
ALTER TABLE refresh_families ADD COLUMN live_issued_at BIGINT;
ALTER TABLE refresh_families ADD COLUMN live_expires_at BIGINT;
