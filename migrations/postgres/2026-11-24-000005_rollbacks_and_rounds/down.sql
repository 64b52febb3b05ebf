DROP INDEX transactions_round_id;
DROP INDEX transactions_debit_or_tombstone_ref;
DROP INDEX transactions_one_rollback_per_original;
ALTER TABLE transactions DROP CONSTRAINT transactions_rollback_names_original;
DELETE FROM webhook_attempts WHERE outbox_id IN (
    SELECT o.id FROM webhook_outbox o JOIN transactions t ON t.id = o.transaction_id
    WHERE t.kind = 'ROLLBACK');
DELETE FROM webhook_outbox WHERE transaction_id IN (SELECT id FROM transactions WHERE kind = 'ROLLBACK');
DELETE FROM transactions WHERE kind = 'ROLLBACK';
UPDATE transactions SET status = 'COMPLETED' WHERE status = 'ROLLED_BACK';
ALTER TABLE transactions DROP CONSTRAINT transactions_amount_cents_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_amount_cents_check CHECK (amount_cents > 0);
ALTER TABLE transactions DROP CONSTRAINT transactions_status_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_status_check
    CHECK (status IN ('PENDING', 'COMPLETED', 'REJECTED'));
ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check CHECK (kind IN ('DEBIT', 'CREDIT'));
ALTER TABLE transactions DROP COLUMN original_transaction_id;
ALTER TABLE transactions DROP COLUMN original_ref_id;
ALTER TABLE transactions DROP COLUMN round_closed;
ALTER TABLE transactions DROP COLUMN round_id;
