-- Money is BIGINT minor units; times are UTC in TIMESTAMP columns; ids and JSON are TEXT,
-- so that the same diesel schema serves Postgres and SQLite.

CREATE TABLE transactions (
    id                 TEXT PRIMARY KEY,
    idempotency_key    TEXT NOT NULL UNIQUE,
    ref_id             TEXT NOT NULL UNIQUE,
    player_id          TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('DEBIT', 'CREDIT')),
    amount_cents       BIGINT NOT NULL CHECK (amount_cents > 0),
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'REJECTED')),
    reason             TEXT,
    balance_cents      BIGINT,
    operator_reference TEXT,
    meta               TEXT,
    correlation_id     TEXT,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL
);
CREATE INDEX transactions_status_created_at ON transactions (status, created_at);
CREATE INDEX transactions_created_at_id ON transactions (created_at, id);

CREATE TABLE idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    fingerprint     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('IN_PROGRESS', 'COMPLETED')),
    transaction_id  TEXT NOT NULL,
    lease_token     TEXT,
    locked_until    TIMESTAMP,
    response_status INTEGER,
    response_body   TEXT,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,
    transaction_id  TEXT NOT NULL REFERENCES transactions (id),
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'DEAD_LETTER')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    locked_until    TIMESTAMP,
    last_error      TEXT,
    correlation_id  TEXT,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    delivered_at    TIMESTAMP
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
CREATE INDEX webhook_outbox_transaction_id ON webhook_outbox (transaction_id);
