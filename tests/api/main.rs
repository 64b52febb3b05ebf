//! Black-box tests of the hub's HTTP API against a real mock operator and a real database.

mod certs;
mod gate;
mod helpers;
mod hostile;
mod tls_front;

mod governor;
mod hostile_operator;

mod authentication;
mod bad_input;
mod concurrency;
mod config_check;
mod faults;
mod group_commit;
mod hostile_rgs;
mod integration_docs;
mod metrics_listener;
mod migrations;
mod observability;
mod operator_faults;
mod outbox_store;
mod pool;
mod private_postgres;
mod reconcile;
mod recovery;
mod replicas;
mod rollback;
mod runbook;
mod signature_binding;
mod tls_outbound;
mod tls_postgres;
mod tls_redis;
mod wallet_contract;
mod webhooks;
