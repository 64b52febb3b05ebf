//! The answer a wallet call ends with. Final answers are stored on the Idempotency-Key and
//! replayed byte for byte, so they are rendered exactly once, here.

use serde::Serialize;

use crate::domain::TransactionKind;
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

/// A rollback's receipt: the balance only when the operator was asked (and told it
/// exactly), the original only when the hub knew the debit.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RolledBack<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance_cents: Option<i64>,
    transaction_id: &'a str,
    ref_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_transaction_id: Option<&'a str>,
}

/// The final answer of a debit cancelled before its own outcome was known.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cancelled<'a> {
    status: &'static str,
    code: &'static str,
    message: &'static str,
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
    if transaction.kind == TransactionKind::Rollback.as_str() {
        let balance_cents = match decision {
            Decision::Approved { balance_minor, .. } => *balance_minor,
            Decision::Declined { .. } => None,
        };
        return rollback(transaction, balance_cents);
    }
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

/// A settled rollback's answer (201), with the operator's balance if it was asked.
pub fn rollback(rollback: &TransactionRow, balance_cents: Option<i64>) -> Receipt {
    let body = serde_json::to_string(&RolledBack {
        status: "OK",
        balance_cents,
        transaction_id: &rollback.id,
        ref_id: &rollback.ref_id,
        original_transaction_id: rollback.original_transaction_id.as_deref(),
    });
    Receipt {
        status: 201,
        body: body.expect("plain struct serialises"),
        replayed: false,
    }
}

/// What a debit's key answers once a rollback cancelled it before it settled (409).
pub fn cancelled_debit(debit: &TransactionRow) -> Receipt {
    let body = serde_json::to_string(&Cancelled {
        status: "ROLLED_BACK",
        code: "TRANSACTION_ROLLED_BACK",
        message: "this debit was rolled back before it settled: it is not charged (refunded if the operator had charged it)",
        transaction_id: &debit.id,
        ref_id: &debit.ref_id,
    });
    Receipt {
        status: 409,
        body: body.expect("plain struct serialises"),
        replayed: false,
    }
}

/// The answer a settled transaction was given, rebuilt from its row once its key has been
/// reaped: byte for byte what [`render`] wrote then. `None` while it is not settled.
pub fn rebuild(settled: &TransactionRow) -> Option<Receipt> {
    let rolled_back = settled.status == transactions::ROLLED_BACK;
    let cancelled = settled.reason.as_deref() == Some(transactions::CANCELLED);
    if rolled_back && cancelled {
        return Some(Receipt {
            replayed: true,
            ..cancelled_debit(settled)
        });
    }
    let decision = match settled.status.as_str() {
        // A debit rolled back after it completed kept its receipt, and its balance.
        transactions::COMPLETED | transactions::ROLLED_BACK => Decision::Approved {
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
        DeclineReason::Cancelled => "a rollback cancelled this debit before it was applied",
        DeclineReason::OperatorError => "the operator refused the request",
    }
}
