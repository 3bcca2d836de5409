-- Audit search by user and by agent (issue 5): each filter is an index range scan in
-- sequence order, like the tenant, grant and action filters already are.
CREATE INDEX events_user ON events (user_id, seq);
CREATE INDEX events_client ON events (client_id, seq);
