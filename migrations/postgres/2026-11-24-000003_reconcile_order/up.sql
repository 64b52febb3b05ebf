-- Reconciliation merges the hub's transactions with the operator's listing by id, compared
-- byte by byte. The C collation makes ORDER BY id, and the index behind it, follow that
-- order (a linguistic collation would, for one, ignore the hyphens of a UUID).
ALTER TABLE webhook_outbox DROP CONSTRAINT webhook_outbox_transaction_id_fkey;
ALTER TABLE transactions ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE webhook_outbox ALTER COLUMN transaction_id TYPE TEXT COLLATE "C";
ALTER TABLE webhook_outbox ADD CONSTRAINT webhook_outbox_transaction_id_fkey
    FOREIGN KEY (transaction_id) REFERENCES transactions (id);
-- Lets the window filter on created_at be checked from the index while walking ids.
CREATE INDEX transactions_id_created_at ON transactions (id, created_at);
-- Walking ids must not be planned as a created_at range plus a sort of the whole window
-- (SQLite did, at every page); nothing else needs this index.
DROP INDEX transactions_created_at_id;
