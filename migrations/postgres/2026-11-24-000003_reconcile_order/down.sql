CREATE INDEX transactions_created_at_id ON transactions (created_at, id);
DROP INDEX transactions_id_created_at;
ALTER TABLE webhook_outbox DROP CONSTRAINT webhook_outbox_transaction_id_fkey;
ALTER TABLE webhook_outbox ALTER COLUMN transaction_id TYPE TEXT COLLATE "default";
ALTER TABLE transactions ALTER COLUMN id TYPE TEXT COLLATE "default";
ALTER TABLE webhook_outbox ADD CONSTRAINT webhook_outbox_transaction_id_fkey
    FOREIGN KEY (transaction_id) REFERENCES transactions (id);
