//! hub: a wallet integration hub between game servers (RGS) and an operator's wallet.
//!
//! Layout follows the flow of a wallet call: [`http`] authenticates and parses, [`wallet`]
//! runs the idempotent phases, [`operator`] talks to the operator, [`store`] persists.

pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod operator;
pub mod outbound;
pub mod outbox;
pub mod reconcile;
pub mod settings;
pub mod signature;
pub mod startup;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod wallet;
