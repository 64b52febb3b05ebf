
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
