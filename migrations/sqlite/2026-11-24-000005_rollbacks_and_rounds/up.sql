-- The seamless-wallet contract (DESIGN §8): rounds, rollbacks and tombstones. SQLite cannot
-- change a CHECK constraint in place, so the table is rebuilt the way its documentation
-- prescribes: foreign keys off, one transaction, then checked before commit.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE transactions_rebuilt (
    id                 TEXT PRIMARY KEY,
    idempotency_key    TEXT NOT NULL UNIQUE,
    ref_id             TEXT NOT NULL UNIQUE,
    player_id          TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('DEBIT', 'CREDIT', 'ROLLBACK')),
    -- A tombstone cancels an amount nobody told the hub: it records 0.
    amount_cents       BIGINT NOT NULL
        CHECK (amount_cents > 0 OR (kind = 'ROLLBACK' AND amount_cents = 0)),
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL
        CHECK (status IN ('PENDING', 'COMPLETED', 'REJECTED', 'ROLLED_BACK')),
    reason             TEXT,
    balance_cents      BIGINT,
    operator_reference TEXT,
    meta               TEXT,
    correlation_id     TEXT,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL,
    recovery_attempts  INTEGER NOT NULL DEFAULT 0,
    next_recovery_at   TIMESTAMP,
    review_since       TIMESTAMP,
    -- Rounds: which game round a bet or win belongs to.
    round_id           TEXT,
    round_closed       BOOLEAN NOT NULL DEFAULT FALSE,
    -- A ROLLBACK row names the debit it cancels by refId, and by id once the hub knows it;
    -- a rollback with no original transaction is a tombstone for a refId the hub never saw.
    original_ref_id    TEXT,
    original_transaction_id TEXT,
    CHECK ((kind = 'ROLLBACK') = (original_ref_id IS NOT NULL))
);
INSERT INTO transactions_rebuilt (id, idempotency_key, ref_id, player_id, kind, amount_cents,
        currency, status, reason, balance_cents, operator_reference, meta, correlation_id,
        created_at, updated_at, recovery_attempts, next_recovery_at, review_since)
    SELECT id, idempotency_key, ref_id, player_id, kind, amount_cents, currency, status, reason,
        balance_cents, operator_reference, meta, correlation_id, created_at, updated_at,
        recovery_attempts, next_recovery_at, review_since
    FROM transactions;
DROP TABLE transactions;
ALTER TABLE transactions_rebuilt RENAME TO transactions;

CREATE INDEX transactions_recovery_queue
    ON transactions (recovery_attempts, next_recovery_at) WHERE status = 'PENDING';
CREATE INDEX transactions_under_review
    ON transactions (review_since) WHERE status = 'PENDING' AND review_since IS NOT NULL;
-- A debit is cancelled at most once: a second rollback of it collides here.
CREATE UNIQUE INDEX transactions_one_rollback_per_original
    ON transactions (original_ref_id) WHERE original_ref_id IS NOT NULL;
-- A debit's refId and a tombstone's original refId share one namespace, so a debit and the
-- tombstone that forbids it can never both commit, whichever comes first (credits and other
-- rollbacks have no entry).
CREATE UNIQUE INDEX transactions_debit_or_tombstone_ref ON transactions ((
    CASE WHEN kind = 'DEBIT' THEN ref_id
         WHEN kind = 'ROLLBACK' AND original_transaction_id IS NULL THEN original_ref_id
    END))
    WHERE kind = 'DEBIT' OR (kind = 'ROLLBACK' AND original_transaction_id IS NULL);
CREATE INDEX transactions_round_id ON transactions (round_id) WHERE round_id IS NOT NULL;

-- Debits parked for review past their resume window are now cancelled by the completer.
UPDATE transactions SET next_recovery_at = COALESCE(review_since, created_at)
    WHERE kind = 'DEBIT' AND status = 'PENDING' AND next_recovery_at IS NULL;

-- Aborts the migration (before commit) if the rebuild broke a reference.
CREATE TEMP TABLE rebuild_check (broken INTEGER CHECK (broken = 0));
INSERT INTO rebuild_check SELECT COUNT(*) FROM pragma_foreign_key_check;
DROP TABLE rebuild_check;
COMMIT;
PRAGMA foreign_keys = ON;
