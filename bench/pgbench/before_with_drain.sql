-- One debit as the hub writes it today: a claim transaction and a settle transaction, each
-- after the pool's connection check (r2d2 test_on_check_out: SELECT 1 on every checkout).
-- Needs -M prepared (diesel prepares its statements) and -D run=<int> -D seq=0 -D body=<json>
-- -D payload=<json> (run.sh sets them: pgbench would read the colons of a JSON literal in the
-- script as variables); run.sh says what every script models and how ids are made.
\set seq :seq + 1

-- Claim (phases::claim): key IN_PROGRESS under a lease, transaction PENDING.
SELECT 1;
BEGIN;
INSERT INTO idempotency_keys (idempotency_key, fingerprint, state, transaction_id, lease_token,
    locked_until, response_status, response_body, created_at, updated_at)
VALUES (md5('k-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-1')::uuid::text,
    md5('f-' || :seq::bigint || '-' || :client_id::int),
    'IN_PROGRESS',
    't' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-'
        || lpad(to_hex(:client_id::int), 4, '0') || '-0001-0000000',
    md5('l-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-1')::uuid::text,
    now() AT TIME ZONE 'utc' + interval '30 seconds', NULL, NULL,
    now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc')
ON CONFLICT DO NOTHING;
INSERT INTO transactions (id, idempotency_key, ref_id, player_id, kind, amount_cents, currency,
    status, reason, balance_cents, operator_reference, meta, correlation_id, created_at,
    updated_at, recovery_attempts, next_recovery_at, review_since, round_id, round_closed,
    original_ref_id, original_transaction_id)
VALUES ('t' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-'
        || lpad(to_hex(:client_id::int), 4, '0') || '-0001-0000000',
    md5('k-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-1')::uuid::text,
    'loadgen-' || md5('r-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-1')::uuid::text,
    'player-005', 'DEBIT', 1, 'USD', 'PENDING', NULL, NULL, NULL, NULL,
    md5('c-' || :client_id::int || '-' || :seq::bigint)::uuid::text,
    now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', 0,
    now() AT TIME ZONE 'utc' + interval '10 seconds', NULL, NULL, false, NULL, NULL);
COMMIT;

-- Settle (phases::settle): key COMPLETED with its stored answer, transaction COMPLETED,
-- its event queued, drainers woken at commit.
SELECT 1;
BEGIN;
UPDATE idempotency_keys SET state = 'COMPLETED', response_status = 201,
    response_body = :body,
    lease_token = NULL, locked_until = NULL, updated_at = now() AT TIME ZONE 'utc'
WHERE idempotency_key = md5('k-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-1')::uuid::text
    AND state = 'IN_PROGRESS'
    AND lease_token = md5('l-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-1')::uuid::text;
UPDATE transactions SET status = 'COMPLETED', reason = NULL, balance_cents = 24999,
    operator_reference = 'op-' || md5(id)::uuid::text, updated_at = now() AT TIME ZONE 'utc',
    next_recovery_at = NULL
WHERE id = 't' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-'
        || lpad(to_hex(:client_id::int), 4, '0') || '-0001-0000000'
    AND status = 'PENDING';
INSERT INTO webhook_outbox (id, transaction_id, event_type, payload, status, attempts,
    next_attempt_at, correlation_id, created_at, updated_at)
VALUES ('e' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-'
        || lpad(to_hex(:client_id::int), 4, '0') || '-0001-0000000',
    't' || lpad(to_hex(:run::bigint), 8, '0') || '-' || lpad(to_hex(:seq::bigint), 8, '0') || '-'
        || lpad(to_hex(:client_id::int), 4, '0') || '-0001-0000000',
    'transaction.completed',
    :payload,
    'PENDING', 0, now() AT TIME ZONE 'utc',
    md5('c-' || :client_id::int || '-' || :seq::bigint)::uuid::text,
    now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc');
NOTIFY hub_outbox;
COMMIT;

-- Drain, as today, one event per claim (the worst case, and what a drainer woken by each
-- commit's NOTIFY mostly finds under steady load): the claim transaction selects the due
-- ids FOR UPDATE SKIP LOCKED, leases them and reads them back; the record transaction
-- inserts the attempt and marks the event DELIVERED if this claim still holds it. Each
-- after the pool's connection check. The ids come back as one string so the next
-- statements can name them.
SELECT 1;
BEGIN;
SELECT coalesce(string_agg(id, ','), '') AS claimed_ids
FROM (SELECT id FROM webhook_outbox
    WHERE status = 'PENDING' AND next_attempt_at <= now() AT TIME ZONE 'utc'
        AND (locked_until IS NULL OR locked_until <= now() AT TIME ZONE 'utc')
    ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED) due
\gset
UPDATE webhook_outbox SET locked_until = now() AT TIME ZONE 'utc' + interval '30 seconds',
    locked_by = md5('d-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || 0)::uuid::text, updated_at = now() AT TIME ZONE 'utc'
WHERE id = ANY (string_to_array(:claimed_ids::text, ','));
SELECT * FROM webhook_outbox WHERE id = ANY (string_to_array(:claimed_ids::text, ','))
ORDER BY next_attempt_at;
COMMIT;
SELECT 1;
BEGIN;
INSERT INTO webhook_attempts (outbox_id, attempt, attempted_at, status_code, error, duration_ms,
    worker)
SELECT id, 1, now() AT TIME ZONE 'utc', 200, NULL, 1, 'drainer-' || :client_id::int
FROM unnest(string_to_array(:claimed_ids::text, ',')) id;
UPDATE webhook_outbox SET status = 'DELIVERED', attempts = 1, next_attempt_at = now() AT TIME ZONE 'utc',
    last_error = NULL, delivered_at = now() AT TIME ZONE 'utc', locked_until = NULL, locked_by = NULL,
    updated_at = now() AT TIME ZONE 'utc'
WHERE id = ANY (string_to_array(:claimed_ids::text, ',')) AND status = 'PENDING'
    AND locked_by = md5('d-' || :run::bigint || '-' || :client_id::int || '-' || :seq::bigint || '-' || 0)::uuid::text;
COMMIT;
