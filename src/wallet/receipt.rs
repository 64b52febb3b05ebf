//! The answer a wallet call ends with. Final answers are stored on the Idempotency-Key and
//! replayed byte for byte, so they are rendered exactly once, here.

use serde::Serialize;

use crate::operator::{Decision, DeclineReason};
use crate::store::transactions::{self, TransactionRow};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub status: u16,
    pub body: String,
    /// True when this is a stored answer given again.
    pub replayed: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Approved<'a> {
    status: &'static str,
    balance_cents: Option<i64>,
    transaction_id: &'a str,
    ref_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rejected<'a> {
    status: &'static str,
    reason: &'static str,
    code: &'static str,
    message: &'static str,
    transaction_id: &'a str,
    ref_id: &'a str,
}

pub fn render(transaction: &TransactionRow, decision: &Decision) -> Receipt {
    let (status, body) = match decision {
        Decision::Approved { balance_minor, .. } => (
            201,
            serde_json::to_string(&Approved {
                status: "OK",
                balance_cents: *balance_minor,
                transaction_id: &transaction.id,
                ref_id: &transaction.ref_id,
            }),
        ),
        Decision::Declined { reason, .. } => (
            http_status(*reason),
            serde_json::to_string(&Rejected {
                status: "REJECTED",
                reason: reason.code(),
                code: reason.code(),
                message: explain(*reason),
                transaction_id: &transaction.id,
                ref_id: &transaction.ref_id,
            }),
        ),
    };
    Receipt {
        status,
        body: body.expect("plain struct serialises"),
        replayed: false,
    }
}

/// The answer a settled transaction was given, rebuilt from its row once its key has been
/// reaped: byte for byte what [`render`] wrote then. `None` while it is not settled.
pub fn rebuild(settled: &TransactionRow) -> Option<Receipt> {
    let decision = match settled.status.as_str() {
        transactions::COMPLETED => Decision::Approved {
            balance_minor: settled.balance_cents,
            reference: settled.operator_reference.clone(),
        },
        transactions::REJECTED => Decision::Declined {
            reason: DeclineReason::from_code(settled.reason.as_deref()?)?,
            message: String::new(),
        },
        _ => return None,
    };
    Some(Receipt {
        replayed: true,
        ..render(settled, &decision)
    })
}

fn http_status(reason: DeclineReason) -> u16 {
    match reason {
        DeclineReason::PlayerNotFound => 404,
        _ => 422,
    }
}

fn explain(reason: DeclineReason) -> &'static str {
    match reason {
        DeclineReason::InsufficientFunds => "the player's balance is too low for this debit",
        DeclineReason::PlayerNotFound => "the operator does not know this player",
        DeclineReason::CurrencyMismatch => "the currency does not match the player's wallet",
        DeclineReason::OperatorDeclined => "the operator declined the transaction",
        DeclineReason::OperatorError => "the operator refused the request",
    }
}
