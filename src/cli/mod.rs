//! Admin subcommands that work on the database directly, without a running hub.

pub mod outbox;
pub mod reconcile;
