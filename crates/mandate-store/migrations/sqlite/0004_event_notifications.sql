-- PostgreSQL notifies other nodes of new events here (LISTEN/NOTIFY). SQLite is one node and
-- its feed readers are woken in-process, so there is nothing to add; the file keeps both
-- migration folders in step.
SELECT 1;
