CREATE INDEX transactions_created_at_id ON transactions (created_at, id);
DROP INDEX transactions_id_created_at;
