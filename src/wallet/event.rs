//! The webhook event a settled transaction produces, written to the outbox with it.

use chrono::{NaiveDateTime, SecondsFormat};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::transactions::TransactionRow;

pub const COMPLETED: &str = "transaction.completed";
pub const REJECTED: &str = "transaction.rejected";
/// A rollback settled: its data is the rollback, naming the debit it cancelled.
pub const ROLLED_BACK: &str = "transaction.rolled_back";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    event_type: &'a str,
    event_id: &'a str,
    timestamp: String,
    data: Data<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    transaction_id: &'a str,
    ref_id: &'a str,
    player_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    amount_cents: i64,
    /// `None` only for a tombstone, which cancels an amount nobody told the hub.
    currency: Option<&'a str>,
    status: &'a str,
    balance_cents: Option<i64>,
    reason: Option<&'a str>,
    meta: Option<&'a RawValue>,
    // Absent unless set, so that events of calls without rounds read as they always did.
    #[serde(skip_serializing_if = "Option::is_none")]
    round_id: Option<&'a str>,
    /// Present with its round (or when a round is closed without naming it).
    #[serde(skip_serializing_if = "Option::is_none")]
    round_closed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_ref_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_transaction_id: Option<&'a str>,
}

/// The payload for `transaction`, already settled, as JSON text.
pub fn payload(
    event_type: &str,
    event_id: &str,
    transaction: &TransactionRow,
    at: NaiveDateTime,
) -> String {
    // `meta` was stored as canonical JSON by this hub, so it parses; if it somehow does not,
    // the event still goes out without it rather than not at all.
    let meta: Option<Box<RawValue>> = transaction
        .meta
        .as_deref()
        .and_then(|text| RawValue::from_string(text.to_owned()).ok());
    let event = Event {
        event_type,
        event_id,
        timestamp: at.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true),
        data: Data {
            transaction_id: &transaction.id,
            ref_id: &transaction.ref_id,
            player_id: &transaction.player_id,
            kind: &transaction.kind,
            amount_cents: transaction.amount_cents,
            currency: Some(transaction.currency.as_str()).filter(|code| !code.is_empty()),
            status: &transaction.status,
            balance_cents: transaction.balance_cents,
            reason: transaction.reason.as_deref(),
            meta: meta.as_deref(),
            round_id: transaction.round_id.as_deref(),
            round_closed: (transaction.round_id.is_some() || transaction.round_closed)
                .then_some(transaction.round_closed),
            original_ref_id: transaction.original_ref_id.as_deref(),
            original_transaction_id: transaction.original_transaction_id.as_deref(),
        },
    };
    serde_json::to_string(&event).expect("plain struct serialises")
}
