PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
DELETE FROM webhook_attempts WHERE outbox_id IN (
    SELECT o.id FROM webhook_outbox o JOIN transactions t ON t.id = o.transaction_id
    WHERE t.kind = 'ROLLBACK');
DELETE FROM webhook_outbox WHERE transaction_id IN (SELECT id FROM transactions WHERE kind = 'ROLLBACK');
DELETE FROM transactions WHERE kind = 'ROLLBACK';
UPDATE transactions SET status = 'COMPLETED' WHERE status = 'ROLLED_BACK';
CREATE TABLE transactions_rebuilt (
    id                 TEXT PRIMARY KEY,
    idempotency_key    TEXT NOT NULL UNIQUE,
    ref_id             TEXT NOT NULL UNIQUE,
    player_id          TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('DEBIT', 'CREDIT')),
    amount_cents       BIGINT NOT NULL CHECK (amount_cents > 0),
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'REJECTED')),
    reason             TEXT,
    balance_cents      BIGINT,
    operator_reference TEXT,
    meta               TEXT,
    correlation_id     TEXT,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL,
    recovery_attempts  INTEGER NOT NULL DEFAULT 0,
    next_recovery_at   TIMESTAMP,
    review_since       TIMESTAMP
);
INSERT INTO transactions_rebuilt SELECT id, idempotency_key, ref_id, player_id, kind,
    amount_cents, currency, status, reason, balance_cents, operator_reference, meta,
    correlation_id, created_at, updated_at, recovery_attempts, next_recovery_at, review_since
    FROM transactions;
DROP TABLE transactions;
ALTER TABLE transactions_rebuilt RENAME TO transactions;
CREATE INDEX transactions_recovery_queue
    ON transactions (recovery_attempts, next_recovery_at) WHERE status = 'PENDING';
CREATE INDEX transactions_under_review
    ON transactions (review_since) WHERE status = 'PENDING' AND review_since IS NOT NULL;
COMMIT;
PRAGMA foreign_keys = ON;
