DROP TABLE webhook_outbox;
DROP TABLE idempotency_keys;
DROP TABLE transactions;
