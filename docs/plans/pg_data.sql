-- The data set behind docs/QUERY_PLANS.md, for Postgres; run by explain.sh after the
-- migrations. psql variables: rows (transactions), now ('YYYY-MM-DD HH:MM:SS', the "now"
-- of every query). Row i is created at now - 7 days + i * 604.8 ms (for 1,000,000 rows),
-- in that order, so heap order follows time as it does in production.
--
--   transactions      rows; i % 1000 = 500 PENDING (0.1 %), i % 1000 in 1..29 REJECTED
--                     (2.9 %), the rest COMPLETED. PENDING: recovery_attempts 0..10,
--                     next_recovery_at mostly due, some later; 30 % under review.
--   idempotency_keys  one per transaction: COMPLETED, or IN_PROGRESS for PENDING ones.
--   webhook_outbox    one per transaction: i % 200 = 7 PENDING (0.5 %, half due, some
--                     claimed), i % 200 = 13 DEAD_LETTER (0.5 %), the rest DELIVERED.
--   webhook_attempts  1 per delivered event (2 for one in ten), 10 per pending one,
--                     12 per dead letter: about 1.2 attempts per event.
\set ON_ERROR_STOP 1
SET synchronous_commit = off;

-- UUIDv7 text as Uuid::now_v7() writes it: 48 bits of Unix milliseconds first.
CREATE FUNCTION pg_temp.v7(ms bigint, seed text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-'
        || substr('89ab', 1 + (ascii(substr(r, 4, 1)) % 4), 1) || substr(r, 5, 3) || '-'
        || substr(r, 8, 12)
    FROM (SELECT lpad(to_hex(ms), 12, '0') AS h, md5(seed) AS r) AS s
$$;
CREATE FUNCTION pg_temp.v4(seed text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT substr(r, 1, 8) || '-' || substr(r, 9, 4) || '-4' || substr(r, 14, 3) || '-a'
        || substr(r, 18, 3) || '-' || substr(r, 21, 12)
    FROM (SELECT md5(seed) AS r) AS s
$$;

SELECT (extract(epoch FROM TIMESTAMP :'now' - INTERVAL '7 days') * 1000)::bigint AS t0ms \gset

INSERT INTO transactions (id, idempotency_key, ref_id, player_id, kind, amount_cents, currency,
                          status, reason, balance_cents, operator_reference, meta,
                          correlation_id, created_at, updated_at, recovery_attempts,
                          next_recovery_at, review_since)
SELECT pg_temp.v7(ms, 't' || i), pg_temp.v4('k' || i), 'ref-' || md5('r' || i),
       'player-' || lpad((i % 50000)::text, 5, '0'),
       CASE WHEN i % 3 = 0 THEN 'CREDIT' ELSE 'DEBIT' END, 1 + (i * 7919) % 100000, 'EUR',
       st,
       CASE st WHEN 'REJECTED' THEN 'INSUFFICIENT_FUNDS' END,
       CASE st WHEN 'COMPLETED' THEN 100000 + (i * 31) % 900000 END,
       CASE st WHEN 'COMPLETED' THEN 'op-' || i END,
       NULL, pg_temp.v4('c' || i), at,
       CASE st WHEN 'PENDING' THEN at ELSE at + INTERVAL '150 ms' END,
       CASE st WHEN 'PENDING' THEN k % 11 ELSE 0 END,
       CASE
           WHEN st <> 'PENDING' THEN NULL
           -- a debit past its resume window: only a person can finish it
           WHEN k % 10 < 3 AND i % 3 <> 0 THEN NULL
           -- backing off: due later
           WHEN k % 7 = 0 THEN TIMESTAMP :'now' + (k % 60) * INTERVAL '1 minute'
           ELSE least(at + (1 << (k % 11)::int) * INTERVAL '1 minute', TIMESTAMP :'now')
       END,
       CASE WHEN st = 'PENDING' AND k % 10 < 3
            THEN least(at + INTERVAL '1 hour', TIMESTAMP :'now') END
FROM (
    SELECT i, i / 1000 AS k, ms,
           to_timestamp(ms / 1000.0) AT TIME ZONE 'UTC' AS at,
           CASE WHEN i % 1000 = 500 THEN 'PENDING'
                WHEN i % 1000 BETWEEN 1 AND 29 THEN 'REJECTED'
                ELSE 'COMPLETED' END AS st
    FROM (SELECT i, :t0ms + i::bigint * 604800000 / :rows AS ms
          FROM generate_series(1::bigint, :rows) AS i) AS g
) AS s;

INSERT INTO idempotency_keys (idempotency_key, fingerprint, state, transaction_id, lease_token,
                              locked_until, response_status, response_body, created_at,
                              updated_at)
SELECT t.idempotency_key, md5('f' || t.id),
       CASE t.status WHEN 'PENDING' THEN 'IN_PROGRESS' ELSE 'COMPLETED' END,
       t.id,
       CASE t.status WHEN 'PENDING' THEN pg_temp.v4('l' || t.id) END,
       CASE t.status WHEN 'PENDING' THEN t.created_at + INTERVAL '30 s' END,
       CASE t.status WHEN 'COMPLETED' THEN 200 WHEN 'REJECTED' THEN 402 END,
       CASE WHEN t.status <> 'PENDING' THEN
           '{"transactionId":"' || t.id || '","refId":"' || t.ref_id || '","status":"'
           || t.status || '","balance":{"amountMinor":' || coalesce(t.balance_cents, 0)
           || ',"currency":"EUR"},"operatorReference":"' || coalesce(t.operator_reference, '')
           || '"}' END,
       t.created_at, t.updated_at
FROM transactions AS t
ORDER BY t.created_at;

INSERT INTO webhook_outbox (id, transaction_id, event_type, payload, status, attempts,
                            next_attempt_at, locked_until, last_error, correlation_id,
                            created_at, updated_at, delivered_at, locked_by)
SELECT pg_temp.v7(ms + 150, 'o' || i), tx,
       CASE WHEN i % 1000 BETWEEN 1 AND 29 THEN 'transaction.rejected'
            ELSE 'transaction.completed' END,
       '{"eventId":"' || pg_temp.v7(ms + 150, 'o' || i) || '","eventType":"transaction.completed",'
       || '"transaction":{"transactionId":"' || tx || '","refId":"ref-' || md5('r' || i)
       || '","playerId":"player-' || lpad((i % 50000)::text, 5, '0')
       || '","type":"DEBIT","amountMinor":' || (1 + (i * 7919) % 100000)
       || ',"currency":"EUR","status":"COMPLETED","balanceMinor":' || (100000 + (i * 31) % 900000)
       || ',"createdAt":"' || at || '"},"occurredAt":"' || at || '"}',
       st,
       CASE st WHEN 'PENDING' THEN 10 WHEN 'DEAD_LETTER' THEN 12
               ELSE CASE WHEN i % 10 = 2 THEN 2 ELSE 1 END END,
       CASE st
           WHEN 'PENDING' THEN
               CASE WHEN (i / 200) % 2 = 0
                    THEN greatest(at, TIMESTAMP :'now' - (i % 3600) * INTERVAL '1 s')
                    ELSE TIMESTAMP :'now' + (i % 3600) * INTERVAL '1 s' END
           WHEN 'DEAD_LETTER' THEN at + INTERVAL '1 day'
           ELSE at + CASE WHEN i % 10 = 2 THEN INTERVAL '1 minute' ELSE INTERVAL '0' END
       END,
       CASE WHEN st = 'PENDING' AND (i / 200) % 10 = 1 THEN TIMESTAMP :'now' + INTERVAL '30 s' END,
       CASE WHEN st <> 'DELIVERED' THEN 'HTTP 503 from the RGS' END,
       pg_temp.v4('c' || i), at, at,
       CASE WHEN st = 'DELIVERED'
            THEN at + CASE WHEN i % 10 = 2 THEN INTERVAL '1 minute' ELSE INTERVAL '200 ms' END END,
       CASE WHEN st = 'PENDING' AND (i / 200) % 10 = 1 THEN 'worker-1' END
FROM (
    SELECT i, ms, to_timestamp((ms + 150) / 1000.0) AT TIME ZONE 'UTC' AS at,
           pg_temp.v7(ms, 't' || i) AS tx,
           CASE WHEN i % 200 = 7 THEN 'PENDING' WHEN i % 200 = 13 THEN 'DEAD_LETTER'
                ELSE 'DELIVERED' END AS st
    FROM (SELECT i, :t0ms + i::bigint * 604800000 / :rows AS ms
          FROM generate_series(1::bigint, :rows) AS i) AS g
) AS s;

INSERT INTO webhook_attempts (outbox_id, attempt, attempted_at, status_code, error, duration_ms,
                              worker)
SELECT o.id, a, o.created_at + (a - 1) * INTERVAL '2 minutes' + INTERVAL '100 ms',
       CASE WHEN o.status = 'DELIVERED' AND a = o.attempts THEN 200 ELSE 503 END,
       CASE WHEN o.status = 'DELIVERED' AND a = o.attempts THEN NULL ELSE 'HTTP 503' END,
       20 + (a * 7 + length(o.id)) % 300, 'worker-' || (a % 4)
FROM webhook_outbox AS o
CROSS JOIN LATERAL generate_series(1, o.attempts) AS a
ORDER BY o.created_at, a;

VACUUM ANALYZE;
