-- SQLite compares TEXT byte by byte already; this index lets reconciliation check the
-- window on created_at while walking ids.
CREATE INDEX transactions_id_created_at ON transactions (id, created_at);
-- Walking ids must not be planned as a created_at range plus a sort of the whole window
-- (SQLite did, at every page); nothing else needs this index.
DROP INDEX transactions_created_at_id;
