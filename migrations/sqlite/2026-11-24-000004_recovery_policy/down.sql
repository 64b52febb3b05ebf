CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
DROP INDEX idempotency_keys_reapable;
CREATE INDEX transactions_status_created_at ON transactions (status, created_at);
DROP INDEX transactions_under_review;
DROP INDEX transactions_recovery_queue;
ALTER TABLE transactions DROP COLUMN review_since;
ALTER TABLE transactions DROP COLUMN next_recovery_at;
ALTER TABLE transactions DROP COLUMN recovery_attempts;
