-- The recovery policy (DESIGN §8): every PENDING transaction has its own schedule in the
-- completer's queue, so one that keeps failing never delays the others, and a flag for the
-- ones a person must look at.
ALTER TABLE transactions ADD COLUMN recovery_attempts INTEGER NOT NULL DEFAULT 0;
-- When the completer may next act on a PENDING transaction; NULL: never (settled, or a
-- debit past its resume window waiting for review).
ALTER TABLE transactions ADD COLUMN next_recovery_at TIMESTAMP;
-- Set once the transaction needs a person: a debit past its resume window, or any
-- transaction still PENDING past MANUAL_REVIEW_AFTER.
ALTER TABLE transactions ADD COLUMN review_since TIMESTAMP;
UPDATE transactions SET next_recovery_at = created_at WHERE status = 'PENDING';

-- The completer's queue: fewest attempts first, then the earliest due. Only PENDING rows,
-- so the index stays as small as the backlog of unknown outcomes.
CREATE INDEX transactions_recovery_queue
    ON transactions (recovery_attempts, next_recovery_at) WHERE status = 'PENDING';
-- The review list and its gauge.
CREATE INDEX transactions_under_review
    ON transactions (review_since) WHERE status = 'PENDING' AND review_since IS NOT NULL;
-- Nothing queries PENDING rows by creation time any more.
DROP INDEX transactions_status_created_at;
-- Neither planner walks it for reconciliation: Postgres prefers the primary key, and SQLite
-- does too without ANALYZE statistics (the hub never gathers them). It cost every
-- transaction a write for nothing (docs/QUERY_PLANS.md).
DROP INDEX transactions_id_created_at;

-- The key reaper walks completed keys by age.
CREATE INDEX idempotency_keys_reapable ON idempotency_keys (updated_at) WHERE state = 'COMPLETED';
DROP INDEX idempotency_keys_created_at;

-- The outbox: one full index for time order, partial ones for its few PENDING and
-- DEAD_LETTER rows (docs/QUERY_PLANS.md has the plan of every query).
-- The drainer's claim, the oldest-due gauge and the PENDING gauge: only PENDING rows, so the
-- index is as small as the backlog, and a delivery takes its row out instead of adding one.
CREATE INDEX webhook_outbox_pending_due ON webhook_outbox (next_attempt_at) WHERE status = 'PENDING';
DROP INDEX webhook_outbox_due;
-- Dead letters newest first: their admin listing, the replay by window and their gauge.
CREATE INDEX webhook_outbox_dead_letters
    ON webhook_outbox (created_at, id) WHERE status = 'DEAD_LETTER';
-- The admin listing newest first, with or without a window; with status DELIVERED it
-- walks this and skips the few others.
CREATE INDEX webhook_outbox_created_at_id ON webhook_outbox (created_at, id);
DROP INDEX webhook_outbox_status_created_at;
