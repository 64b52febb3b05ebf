-- Which drainer holds a claimed row, and the audit trail of every delivery attempt.

ALTER TABLE webhook_outbox ADD COLUMN locked_by TEXT;
CREATE INDEX webhook_outbox_delivered_at ON webhook_outbox (delivered_at) WHERE status = 'DELIVERED';
CREATE INDEX webhook_outbox_status_created_at ON webhook_outbox (status, created_at);

CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id    TEXT NOT NULL REFERENCES webhook_outbox (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    attempted_at TIMESTAMP NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  BIGINT NOT NULL,
    worker       TEXT NOT NULL
);
CREATE INDEX webhook_attempts_outbox_id ON webhook_attempts (outbox_id, attempted_at);
