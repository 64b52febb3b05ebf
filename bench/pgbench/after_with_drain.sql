-- A batch of :batch debits as the group-commit design writes them: one claim transaction and
-- one settle transaction for the whole batch, each statement covering every row, and no
-- connection check on checkout. One pgbench transaction = :batch debits.
-- Needs -M prepared -D batch=<B> -D run=<int> -D seq=0 -D body=<json> -D payload=<json>
-- (run.sh sets them); run.sh says what every script models and how ids are made.
\set seq :seq + 1

-- Claim: every transaction PENDING, then every key IN_PROGRESS under its lease; a row that
-- collides is left out (the hub answers it from the stored key instead).
BEGIN;
INSERT INTO transactions (id, idempotency_key, ref_id, player_id, kind, amount_cents, currency,
    status, reason, balance_cents, operator_reference, meta, correlation_id, created_at,
    updated_at, recovery_attempts, next_recovery_at, review_since, round_id, round_closed,
    original_ref_id, original_transaction_id)
SELECT 't' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-' || lpad(to_hex(:client_id::int), 4, '0') || '-' || lpad(to_hex(g), 4, '0') || '-0000000',
    md5('k-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text,
    'loadgen-' || md5('r-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text,
    'player-005', 'DEBIT', 1, 'USD', 'PENDING', NULL, NULL, NULL, NULL,
    md5('c-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text,
    now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 0, now() AT TIME ZONE 'utc' + interval '10 seconds', NULL, NULL, false, NULL, NULL
FROM generate_series(1, :batch::int) g
ON CONFLICT DO NOTHING
RETURNING id;
INSERT INTO idempotency_keys (idempotency_key, fingerprint, state, transaction_id, lease_token,
    locked_until, response_status, response_body, created_at, updated_at)
SELECT md5('k-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text,
    md5('f-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text,
    'IN_PROGRESS',
    't' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-' || lpad(to_hex(:client_id::int), 4, '0') || '-' || lpad(to_hex(g), 4, '0') || '-0000000',
    md5('l-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text,
    now() AT TIME ZONE 'utc' + interval '30 seconds', NULL, NULL, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'
FROM generate_series(1, :batch::int) g
ON CONFLICT DO NOTHING
RETURNING idempotency_key;
COMMIT;

-- Settle: every key COMPLETED with its answer (only under its own lease), every transaction
-- COMPLETED, every event queued, drainers woken once at commit.
BEGIN;
WITH v (idempotency_key, lease_token, response_status, response_body) AS (
    SELECT md5('k-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text, md5('l-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text, 201, :body::text
    FROM generate_series(1, :batch::int) g)
UPDATE idempotency_keys k SET state = 'COMPLETED', response_status = v.response_status,
    response_body = v.response_body, lease_token = NULL, locked_until = NULL,
    updated_at = now() AT TIME ZONE 'utc'
FROM v
WHERE k.idempotency_key = v.idempotency_key AND k.state = 'IN_PROGRESS'
    AND k.lease_token = v.lease_token
RETURNING k.idempotency_key;
WITH v (id, balance_cents, operator_reference) AS (
    SELECT 't' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-' || lpad(to_hex(:client_id::int), 4, '0') || '-' || lpad(to_hex(g), 4, '0') || '-0000000', 25000 - g, 'op-' || md5('o-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text
    FROM generate_series(1, :batch::int) g)
UPDATE transactions t SET status = 'COMPLETED', reason = NULL, balance_cents = v.balance_cents,
    operator_reference = v.operator_reference, updated_at = now() AT TIME ZONE 'utc',
    next_recovery_at = NULL
FROM v
WHERE t.id = v.id AND t.status = 'PENDING'
RETURNING t.id;
INSERT INTO webhook_outbox (id, transaction_id, event_type, payload, status, attempts,
    next_attempt_at, correlation_id, created_at, updated_at)
SELECT 'e' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-' || lpad(to_hex(:client_id::int), 4, '0') || '-' || lpad(to_hex(g), 4, '0') || '-0000000',
    't' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-' || lpad(to_hex(:client_id::int), 4, '0') || '-' || lpad(to_hex(g), 4, '0') || '-0000000',
    'transaction.completed', :payload::text, 'PENDING', 0, now() AT TIME ZONE 'utc',
    md5('c-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || g)::uuid::text,
    now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc'
FROM generate_series(1, :batch::int) g;
NOTIFY hub_outbox;
COMMIT;

-- Drain, batched: one claim statement takes up to :batch due events (any client's: drainers
-- do not know whose they are) under a lease, then one transaction records every attempt
-- and marks every event DELIVERED if this claim still holds it. The claimed ids come back
-- as one string (the hub gets them as rows) so the next statements can name them.
WITH claimed AS (
    UPDATE webhook_outbox SET locked_until = now() AT TIME ZONE 'utc' + interval '30 seconds',
        locked_by = md5('d-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || 0)::uuid::text, updated_at = now() AT TIME ZONE 'utc'
    WHERE id IN (SELECT id FROM webhook_outbox
        WHERE status = 'PENDING' AND next_attempt_at <= now() AT TIME ZONE 'utc'
            AND (locked_until IS NULL OR locked_until <= now() AT TIME ZONE 'utc')
        ORDER BY next_attempt_at LIMIT :batch::int FOR UPDATE SKIP LOCKED)
    RETURNING *)
SELECT coalesce(string_agg(id, ','), '') AS claimed_ids, count(*) AS claimed_count FROM claimed
\gset
BEGIN;
INSERT INTO webhook_attempts (outbox_id, attempt, attempted_at, status_code, error, duration_ms,
    worker)
SELECT id, 1, now() AT TIME ZONE 'utc', 200, NULL, 1, 'drainer-' || :client_id::int
FROM unnest(string_to_array(:claimed_ids::text, ',')) id;
WITH v (id, claim) AS (
    SELECT id, md5('d-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || 0)::uuid::text FROM unnest(string_to_array(:claimed_ids::text, ',')) id)
UPDATE webhook_outbox o SET status = 'DELIVERED', attempts = 1, next_attempt_at = now() AT TIME ZONE 'utc',
    last_error = NULL, delivered_at = now() AT TIME ZONE 'utc', locked_until = NULL, locked_by = NULL,
    updated_at = now() AT TIME ZONE 'utc'
FROM v
WHERE o.id = v.id AND o.status = 'PENDING' AND o.locked_by = v.claim;
COMMIT;
