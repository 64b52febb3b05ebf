//! Table definitions shared by both backends: only integers, text and UTC timestamps, so
//! that one definition fits Postgres and SQLite alike. Ids and JSON are stored as text.

diesel::table! {
    transactions (id) {
        id -> Text,
        idempotency_key -> Text,
        ref_id -> Text,
        player_id -> Text,
        kind -> Text,
        amount_cents -> BigInt,
        currency -> Text,
        status -> Text,
        reason -> Nullable<Text>,
        balance_cents -> Nullable<BigInt>,
        operator_reference -> Nullable<Text>,
        meta -> Nullable<Text>,
        correlation_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        recovery_attempts -> Integer,
        next_recovery_at -> Nullable<Timestamp>,
        review_since -> Nullable<Timestamp>,
        round_id -> Nullable<Text>,
        round_closed -> Bool,
        original_ref_id -> Nullable<Text>,
        original_transaction_id -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (idempotency_key) {
        idempotency_key -> Text,
        fingerprint -> Text,
        state -> Text,
        transaction_id -> Text,
        lease_token -> Nullable<Text>,
        locked_until -> Nullable<Timestamp>,
        response_status -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    webhook_outbox (id) {
        id -> Text,
        transaction_id -> Text,
        event_type -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        locked_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        correlation_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
        locked_by -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> BigInt,
        outbox_id -> Text,
        attempt -> Integer,
        attempted_at -> Timestamp,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        duration_ms -> BigInt,
        worker -> Text,
    }
}

diesel::joinable!(webhook_attempts -> webhook_outbox (outbox_id));

diesel::allow_tables_to_appear_in_same_query!(
    transactions,
    idempotency_keys,
    webhook_outbox,
    webhook_attempts
);
