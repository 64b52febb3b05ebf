DROP TABLE webhook_attempts;
DROP INDEX webhook_outbox_status_created_at;
DROP INDEX webhook_outbox_delivered_at;
ALTER TABLE webhook_outbox DROP COLUMN locked_by;
