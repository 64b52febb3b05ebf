//! The operator's wallet API as the hub sees it: one call, one decision, or "unavailable".

pub mod breaker;
mod client;
pub mod governor;
pub mod listing;
mod response;
pub mod settings;

use std::time::Duration;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use client::OperatorClient;
pub use governor::{Governor, Refusal};
pub use settings::{OperatorConfig, RetryConfig};

use crate::domain::{Currency, TransactionKind};

/// One debit, credit or rollback towards the operator, identified by the hub's transaction
/// id so that every retry is the same operation to the operator.
#[derive(Debug, Clone)]
pub struct OperatorCall {
    pub kind: TransactionKind,
    pub transaction_id: String,
    /// A rollback's: the debit it cancels (charged or not, the operator knows).
    pub original_transaction_id: Option<String>,
    pub player_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub description: String,
    pub correlation_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approved {
        /// `None` when the operator's balance could not be read exactly; the money moved.
        balance_minor: Option<i64>,
        reference: Option<String>,
    },
    Declined {
        reason: DeclineReason,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineReason {
    InsufficientFunds,
    PlayerNotFound,
    CurrencyMismatch,
    /// The operator answered `FAILED` without a more precise status.
    OperatorDeclined,
    /// A rollback reached the operator first: this debit must never be applied.
    Cancelled,
    /// Recorded only by versions before "only a wallet status decides" (a 4xx without one);
    /// never decided now, kept so that those stored answers can still be rebuilt.
    OperatorError,
}

impl DeclineReason {
    pub fn code(self) -> &'static str {
        match self {
            DeclineReason::InsufficientFunds => "INSUFFICIENT_FUNDS",
            DeclineReason::PlayerNotFound => "PLAYER_NOT_FOUND",
            DeclineReason::CurrencyMismatch => "CURRENCY_MISMATCH",
            DeclineReason::OperatorDeclined => "OPERATOR_DECLINED",
            DeclineReason::Cancelled => "CANCELLED",
            DeclineReason::OperatorError => "OPERATOR_ERROR",
        }
    }

    /// The reason a stored `code` names (the inverse of [`Self::code`]).
    pub fn from_code(code: &str) -> Option<Self> {
        [
            DeclineReason::InsufficientFunds,
            DeclineReason::PlayerNotFound,
            DeclineReason::CurrencyMismatch,
            DeclineReason::OperatorDeclined,
            DeclineReason::Cancelled,
            DeclineReason::OperatorError,
        ]
        .into_iter()
        .find(|reason| reason.code() == code)
    }
}

/// A player's balance as the operator reads it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceAnswer {
    Balance { minor: i64, currency: Currency },
    PlayerNotFound,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum OperatorError {
    /// The outcome is unknown: the operator may or may not have applied the call.
    #[error("operator unavailable after {attempts} attempt(s): {last_failure}")]
    Unavailable {
        attempts: u32,
        last_failure: String,
        /// When the operator last asked us to come back, if it did.
        retry_after: Option<Duration>,
    },
    /// The operator refused a request that cannot succeed by asking again.
    #[error("{0}")]
    Refused(String),
}

impl OperatorError {
    /// When the operator asked to be called again, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OperatorError::Unavailable { retry_after, .. } => *retry_after,
            OperatorError::Refused(_) => None,
        }
    }
}
