//! Withdraw and deposit, idempotent on `transactionId`, as a real operator would answer them.
//! A withdraw whose id a rollback already cancelled is refused (see [`crate::rollback`]).

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::money;
use crate::state::{Books, Operation, TransactionRecord};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletCall {
    amount: Box<RawValue>,
    currency: String,
    transaction_id: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted as the real operator does; the mock has no use for it
    description: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Success<'a> {
    status: &'static str,
    transaction_id: &'a str,
    balance: Box<RawValue>,
    currency: &'a str,
    message: &'static str,
}

/// The two calls that move money on the caller's say; rollbacks have their own module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movement {
    Withdraw,
    Deposit,
}

impl From<Movement> for Operation {
    fn from(movement: Movement) -> Self {
        match movement {
            Movement::Withdraw => Operation::Withdraw,
            Movement::Deposit => Operation::Deposit,
        }
    }
}

/// The operator's answer: HTTP status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

pub(crate) fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body: body.to_string(),
    }
}

pub fn parse_call(body: &[u8]) -> Result<WalletCall, Answer> {
    serde_json::from_slice::<WalletCall>(body).map_err(|error| {
        answer(
            400,
            json!({"status": "FAILED", "message": format!("invalid request: {error}")}),
        )
    })
}

pub fn transaction_id_of(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get("transactionId")?.as_str().map(str::to_owned)
}

/// Applies one call to the books. Retries of a known transaction id get the first answer back.
pub fn apply(books: &mut Books, player_id: &str, movement: Movement, call: &WalletCall) -> Answer {
    let operation = Operation::from(movement);
    let Some(exponent) = money::exponent(&call.currency) else {
        return rejected("INVALID_CURRENCY", 400, call, "currency not supported");
    };
    let Some(amount_minor) = money::from_major(call.amount.get(), exponent) else {
        return answer(
            400,
            json!({"status": "FAILED", "message": "amount must be a positive decimal in major units"}),
        );
    };
    if let Some(previous) = books.transactions.get(&call.transaction_id) {
        let same_call = previous.player_id == player_id
            && previous.operation == operation
            && previous.amount_minor == amount_minor
            && previous.currency == call.currency;
        return if same_call {
            replay(previous)
        } else {
            conflict(&call.transaction_id)
        };
    }
    let outcome =
        if movement == Movement::Withdraw && books.cancelled.contains(&call.transaction_id) {
            // Recorded like any other outcome, so its retries replay the same refusal.
            let status = "CANCELLED";
            let message = "transaction was cancelled by a rollback";
            (status, rejected(status, 409, call, message))
        } else {
            decide(books, player_id, movement, amount_minor, call)
        };
    books.transactions.insert(
        call.transaction_id.clone(),
        TransactionRecord {
            transaction_id: call.transaction_id.clone(),
            player_id: player_id.to_owned(),
            operation,
            amount_minor,
            currency: call.currency.clone(),
            status: outcome.0,
            created_at: Utc::now(),
            rollback: None,
            http_status: outcome.1.status,
            response_body: outcome.1.body.clone(),
        },
    );
    outcome.1
}

/// The first answer given for this id, byte for byte.
pub(crate) fn replay(previous: &TransactionRecord) -> Answer {
    Answer {
        status: previous.http_status,
        body: previous.response_body.clone(),
    }
}

/// The id is taken by a different call: refuse without touching anything.
pub(crate) fn conflict(transaction_id: &str) -> Answer {
    answer(
        409,
        json!({"status": "FAILED", "transactionId": transaction_id,
               "message": "transactionId already used for a different operation"}),
    )
}

fn decide(
    books: &mut Books,
    player_id: &str,
    movement: Movement,
    amount_minor: i64,
    call: &WalletCall,
) -> (&'static str, Answer) {
    let Some(account) = books.accounts.get_mut(player_id) else {
        let status = "PLAYER_NOT_FOUND";
        return (status, rejected(status, 404, call, "player not found"));
    };
    if account.currency != call.currency {
        let status = "INVALID_CURRENCY";
        return (
            status,
            rejected(
                status,
                400,
                call,
                "currency does not match the player's wallet",
            ),
        );
    }
    let new_balance = match movement {
        Movement::Withdraw if account.balance_minor < amount_minor => {
            let status = "INSUFFICIENT_FUNDS";
            return (status, rejected(status, 422, call, "insufficient funds"));
        }
        Movement::Withdraw => account.balance_minor - amount_minor,
        Movement::Deposit => match account.balance_minor.checked_add(amount_minor) {
            Some(balance) => balance,
            None => {
                return (
                    "FAILED",
                    rejected("FAILED", 422, call, "balance would overflow"),
                )
            }
        },
    };
    account.balance_minor = new_balance;
    *books
        .charges
        .entry(call.transaction_id.clone())
        .or_default() += 1;
    // Serialised from a struct, not `json!`: a `Value` would turn the balance into a float.
    let body = Success {
        status: "SUCCESS",
        transaction_id: &call.transaction_id,
        balance: money::major_json(new_balance, &call.currency),
        currency: &call.currency,
        message: "ok",
    };
    let body = serde_json::to_string(&body).expect("plain struct serialises");
    ("SUCCESS", Answer { status: 200, body })
}

fn rejected(status: &str, http_status: u16, call: &WalletCall, message: &str) -> Answer {
    answer(
        http_status,
        json!({"status": status, "transactionId": call.transaction_id,
               "currency": call.currency, "message": message}),
    )
}
