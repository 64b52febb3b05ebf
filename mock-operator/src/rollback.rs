//! Rollbacks (DESIGN §8, operator side), as a seamless-wallet operator implements them: a
//! rollback cancels one withdraw exactly once, whatever the operator knows of it.
//!
//! - charged and not yet refunded: the charged amount goes back to the player;
//! - already refunded by another rollback: nothing moves;
//! - never charged, or never seen: the id is marked cancelled, so that the withdraw, should
//!   it still arrive, is refused instead of charging a bet the game gave up on.
//!
//! Every one of those answers SUCCESS, because the caller must always be able to settle a
//! rollback. Only a rollback naming something it cannot cancel (a deposit, another player's
//! withdraw) is refused, and then nothing changes. Idempotent on the rollback's own id.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use crate::money;
use crate::state::{Books, Operation, RollbackDetails, TransactionRecord};
use crate::wallet::{answer, conflict, replay, Answer};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackCall {
    /// The rollback's own id, on which it is idempotent.
    transaction_id: String,
    original_transaction_id: String,
    /// What the caller believes was charged; only recorded, since the refund is always what
    /// the operator itself charged.
    amount: Box<RawValue>,
    currency: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted as the real operator does; the mock has no use for it
    description: Option<String>,
}

/// The SUCCESS answer; serialised from a struct so that the balance stays exact text.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Settled<'a> {
    status: &'static str,
    transaction_id: &'a str,
    original_transaction_id: &'a str,
    refunded: bool,
    /// Absent when the player is unknown to the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<Box<RawValue>>,
    currency: &'a str,
    message: &'static str,
}

/// What the operator knows of the withdraw a rollback names.
enum Original {
    Unknown,
    /// A deposit, a rollback, or someone else's transaction: refused with this message.
    NotRollbackable(&'static str),
    /// Known but not SUCCESS (refused, or itself cancelled): no money to give back.
    NotCharged,
    AlreadyRefunded,
    Charged {
        amount_minor: i64,
    },
}

/// How a rollback settled.
struct Outcome {
    refunded_minor: Option<i64>,
    /// The player's balance afterwards and its currency, if the player exists.
    balance: Option<(i64, String)>,
    message: &'static str,
}

pub fn parse_call(body: &[u8]) -> Result<RollbackCall, Answer> {
    serde_json::from_slice::<RollbackCall>(body).map_err(|error| {
        answer(
            400,
            json!({"status": "FAILED", "message": format!("invalid request: {error}")}),
        )
    })
}

/// Applies one rollback. Retries of a known rollback id get the first answer back.
pub fn apply(books: &mut Books, player_id: &str, call: &RollbackCall) -> Answer {
    let amount_minor = match requested_amount(call) {
        Ok(amount_minor) => amount_minor,
        Err(answer) => return answer,
    };
    if call.transaction_id == call.original_transaction_id {
        return refused(call, "a rollback needs its own transactionId");
    }
    if let Some(previous) = books.transactions.get(&call.transaction_id) {
        let same_call = previous.operation == Operation::Rollback
            && previous.player_id == player_id
            && previous.amount_minor == amount_minor
            && previous.currency == call.currency
            && previous
                .rollback
                .as_ref()
                .map(|r| r.original_transaction_id.as_str())
                == Some(call.original_transaction_id.as_str());
        return if same_call {
            replay(previous)
        } else {
            conflict(&call.transaction_id)
        };
    }
    let outcome = match resolve(books, player_id, call) {
        Ok(outcome) => outcome,
        // Refusals are not recorded: nothing happened, and a retry reaches the same verdict.
        Err(answer) => return answer,
    };
    settle(books, player_id, amount_minor, call, &outcome)
}

/// The rollback's `amount` in minor units, validated exactly like a withdraw's.
fn requested_amount(call: &RollbackCall) -> Result<i64, Answer> {
    let Some(exponent) = money::exponent(&call.currency) else {
        return Err(answer(
            400,
            json!({"status": "INVALID_CURRENCY", "transactionId": call.transaction_id,
                   "currency": call.currency, "message": "currency not supported"}),
        ));
    };
    money::from_major(call.amount.get(), exponent).ok_or_else(|| {
        answer(
            400,
            json!({"status": "FAILED", "message": "amount must be a positive decimal in major units"}),
        )
    })
}

fn classify(books: &Books, player_id: &str, call: &RollbackCall) -> Original {
    let Some(original) = books.transactions.get(&call.original_transaction_id) else {
        return Original::Unknown;
    };
    if original.operation != Operation::Withdraw {
        return Original::NotRollbackable("only a withdraw can be rolled back");
    }
    if original.player_id != player_id {
        return Original::NotRollbackable("the original transaction belongs to another player");
    }
    if original.currency != call.currency {
        return Original::NotRollbackable("currency does not match the original transaction");
    }
    if original.status != "SUCCESS" {
        return Original::NotCharged;
    }
    if refunds_of(books, &call.original_transaction_id) > 0 {
        return Original::AlreadyRefunded;
    }
    // A drifted negative amount must not turn a refund into a charge.
    Original::Charged {
        amount_minor: original.amount_minor.max(0),
    }
}

fn refunds_of(books: &Books, original_transaction_id: &str) -> u32 {
    books
        .refunds
        .get(original_transaction_id)
        .copied()
        .unwrap_or(0)
}

/// Decides and applies the effect on the books; `Err` refuses with nothing changed.
fn resolve(books: &mut Books, player_id: &str, call: &RollbackCall) -> Result<Outcome, Answer> {
    let message = match classify(books, player_id, call) {
        Original::NotRollbackable(message) => return Err(refused(call, message)),
        Original::Charged { amount_minor } => {
            return refund(
                books,
                player_id,
                &call.original_transaction_id,
                amount_minor,
            )
            .map_err(|message| refused(call, message))
        }
        Original::AlreadyRefunded => "original transaction already refunded",
        Original::NotCharged => {
            books.cancelled.insert(call.original_transaction_id.clone());
            "original transaction was not charged; it is cancelled"
        }
        Original::Unknown => {
            books.cancelled.insert(call.original_transaction_id.clone());
            "original transaction unknown; it is cancelled"
        }
    };
    Ok(Outcome {
        refunded_minor: None,
        balance: balance_of(books, player_id),
        message,
    })
}

/// Credits `amount_minor` back to the player, counting it against the original.
fn refund(
    books: &mut Books,
    player_id: &str,
    original_transaction_id: &str,
    amount_minor: i64,
) -> Result<Outcome, &'static str> {
    // Only drift (a withdraw moved to a made-up player) can leave a charge without an account.
    let account = books
        .accounts
        .get_mut(player_id)
        .ok_or("the player's account no longer exists")?;
    let balance = account
        .balance_minor
        .checked_add(amount_minor)
        .ok_or("balance would overflow")?;
    account.balance_minor = balance;
    let currency = account.currency.clone();
    *books
        .refunds
        .entry(original_transaction_id.to_owned())
        .or_default() += 1;
    Ok(Outcome {
        refunded_minor: Some(amount_minor),
        balance: Some((balance, currency)),
        message: "refunded",
    })
}

fn balance_of(books: &Books, player_id: &str) -> Option<(i64, String)> {
    let account = books.accounts.get(player_id)?;
    Some((account.balance_minor, account.currency.clone()))
}

/// Records the rollback with its answer, so that retries replay it, and returns the answer.
fn settle(
    books: &mut Books,
    player_id: &str,
    amount_minor: i64,
    call: &RollbackCall,
    outcome: &Outcome,
) -> Answer {
    let answer = success(call, outcome);
    let record = TransactionRecord {
        transaction_id: call.transaction_id.clone(),
        player_id: player_id.to_owned(),
        operation: Operation::Rollback,
        amount_minor,
        currency: call.currency.clone(),
        status: "SUCCESS",
        created_at: Utc::now(),
        rollback: Some(RollbackDetails {
            original_transaction_id: call.original_transaction_id.clone(),
            refunded: outcome.refunded_minor.is_some(),
            refunded_minor: outcome.refunded_minor.unwrap_or(0),
        }),
        http_status: answer.status,
        response_body: answer.body.clone(),
    };
    books
        .transactions
        .insert(call.transaction_id.clone(), record);
    answer
}

fn success(call: &RollbackCall, outcome: &Outcome) -> Answer {
    // The balance is in the account's currency, so the answer names that one.
    let currency = outcome
        .balance
        .as_ref()
        .map_or(call.currency.as_str(), |(_, currency)| currency.as_str());
    let body = Settled {
        status: "SUCCESS",
        transaction_id: &call.transaction_id,
        original_transaction_id: &call.original_transaction_id,
        refunded: outcome.refunded_minor.is_some(),
        balance: outcome
            .balance
            .as_ref()
            .map(|(minor, currency)| money::major_json(*minor, currency)),
        currency,
        message: outcome.message,
    };
    let body = serde_json::to_string(&body).expect("plain struct serialises");
    Answer { status: 200, body }
}

fn refused(call: &RollbackCall, message: &str) -> Answer {
    answer(
        422,
        json!({"status": "FAILED", "transactionId": call.transaction_id,
               "originalTransactionId": call.original_transaction_id, "message": message}),
    )
}

/// The operator refunds `original_transaction_id` on its own, as rollback `rollback_id`
/// (drift for reconciliation tests). False unless the original is a charged, unrefunded
/// withdraw and `rollback_id` is unused.
pub(crate) fn refund_unprompted(
    books: &mut Books,
    rollback_id: &str,
    original_transaction_id: &str,
) -> bool {
    if books.transactions.contains_key(rollback_id) {
        return false;
    }
    let Some(original) = books.transactions.get(original_transaction_id) else {
        return false;
    };
    let player_id = original.player_id.clone();
    // The rollback the operator would have received had the caller sent it.
    let call = RollbackCall {
        transaction_id: rollback_id.to_owned(),
        original_transaction_id: original_transaction_id.to_owned(),
        amount: money::major_json(original.amount_minor, &original.currency),
        currency: original.currency.clone(),
        description: None,
    };
    let Original::Charged { amount_minor } = classify(books, &player_id, &call) else {
        return false;
    };
    match refund(books, &player_id, original_transaction_id, amount_minor) {
        Ok(outcome) => {
            settle(books, &player_id, amount_minor, &call, &outcome);
            true
        }
        Err(_) => false,
    }
}
