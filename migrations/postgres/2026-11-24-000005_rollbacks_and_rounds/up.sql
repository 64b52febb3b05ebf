-- The seamless-wallet contract (DESIGN §8): rounds, rollbacks and tombstones.
-- Rounds: which game round a bet or win belongs to.
ALTER TABLE transactions ADD COLUMN round_id TEXT;
ALTER TABLE transactions ADD COLUMN round_closed BOOLEAN NOT NULL DEFAULT FALSE;
-- A ROLLBACK row names the debit it cancels by refId, and by id once the hub knows it; a
-- rollback with no original transaction is a tombstone for a refId the hub never saw.
ALTER TABLE transactions ADD COLUMN original_ref_id TEXT;
ALTER TABLE transactions ADD COLUMN original_transaction_id TEXT COLLATE "C";

ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check
    CHECK (kind IN ('DEBIT', 'CREDIT', 'ROLLBACK'));
ALTER TABLE transactions DROP CONSTRAINT transactions_status_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_status_check
    CHECK (status IN ('PENDING', 'COMPLETED', 'REJECTED', 'ROLLED_BACK'));
-- A tombstone cancels an amount nobody told the hub: it records 0.
ALTER TABLE transactions DROP CONSTRAINT transactions_amount_cents_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_amount_cents_check
    CHECK (amount_cents > 0 OR (kind = 'ROLLBACK' AND amount_cents = 0));
ALTER TABLE transactions ADD CONSTRAINT transactions_rollback_names_original
    CHECK ((kind = 'ROLLBACK') = (original_ref_id IS NOT NULL));

-- A debit is cancelled at most once: a second rollback of it collides here.
CREATE UNIQUE INDEX transactions_one_rollback_per_original
    ON transactions (original_ref_id) WHERE original_ref_id IS NOT NULL;
-- A debit's refId and a tombstone's original refId share one namespace, so a debit and the
-- tombstone that forbids it can never both commit, whichever comes first (credits and other
-- rollbacks have no entry), on any replica.
CREATE UNIQUE INDEX transactions_debit_or_tombstone_ref ON transactions ((
    CASE WHEN kind = 'DEBIT' THEN ref_id
         WHEN kind = 'ROLLBACK' AND original_transaction_id IS NULL THEN original_ref_id
    END))
    WHERE kind = 'DEBIT' OR (kind = 'ROLLBACK' AND original_transaction_id IS NULL);
CREATE INDEX transactions_round_id ON transactions (round_id) WHERE round_id IS NOT NULL;

-- Debits parked for review past their resume window are now cancelled by the completer.
UPDATE transactions SET next_recovery_at = COALESCE(review_since, created_at)
    WHERE kind = 'DEBIT' AND status = 'PENDING' AND next_recovery_at IS NULL;
