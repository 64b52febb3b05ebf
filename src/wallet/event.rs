//! The webhook event a settled transaction produces, written to the outbox with it.

use chrono::{NaiveDateTime, SecondsFormat};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::transactions::TransactionRow;

pub const COMPLETED: &str = "transaction.completed";
pub const REJECTED: &str = "transaction.rejected";

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
    currency: &'a str,
    status: &'a str,
    balance_cents: Option<i64>,
    reason: Option<&'a str>,
    meta: Option<&'a RawValue>,
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
            currency: &transaction.currency,
            status: &transaction.status,
            balance_cents: transaction.balance_cents,
            reason: transaction.reason.as_deref(),
            meta: meta.as_deref(),
        },
    };
    serde_json::to_string(&event).expect("plain struct serialises")
}
