
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
