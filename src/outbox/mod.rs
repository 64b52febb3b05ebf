//! Delivery of the transactional outbox to the RGS: at least once, signed, retried on a
//! schedule, dead-lettered when the schedule runs out, replayable with the same event id.

pub mod admin;
mod delivery;
mod drainer;
pub mod listener;
mod recorder;
pub mod retention;
mod schedule;
pub mod settings;
pub mod signer;

pub use drainer::Drainer;
pub use settings::WebhookConfig;
