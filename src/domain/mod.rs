//! Domain types: money in minor units, parsed wallet requests. Nothing here knows HTTP or SQL.

pub mod instant;
pub mod money;
pub mod request;

pub use money::Currency;
pub use request::{
    BalanceRequest, IdempotencyKey, RollbackRequest, Round, TransactionKind, WalletRequest,
};
