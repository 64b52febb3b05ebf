//! Background recovery: the completer finishes transactions left `PENDING` by clients that
//! never came back (or replicas that died), and the reaper forgets old idempotency keys.
//!
//! The completer resumes a transaction exactly as the client's retry would: it must win the
//! key's lease (so no two replicas, and no returning client, resolve one transaction at
//! once), calls the operator with the same transaction id (so an applied charge is answered,
//! not repeated), and settles the transaction, its webhook and the stored answer in one
//! database transaction. The RGS hears about every charge the operator made.

use std::time::Duration;

use chrono::TimeDelta;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::phases::Lease;
use super::{now, operator_call, WalletError, WalletService};
use crate::store::{idempotency_keys, transactions, StoreError};

const BATCH: i64 = 20;

#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// A `PENDING` transaction is abandoned once this old and its key's lease has lapsed.
    pub abandoned_after: Duration,
    pub every: Duration,
    /// Completed idempotency keys older than this are deleted (their refId still guards).
    pub key_retention: Duration,
    /// See [`super::WalletParts::lease_margin`].
    pub lease_margin: Duration,
}

impl WalletService {
    /// Resolves up to one batch of abandoned transactions; returns how many it settled.
    pub async fn complete_abandoned(
        &self,
        abandoned_after: Duration,
    ) -> Result<usize, WalletError> {
        let older_than = now() - abandoned_after;
        let candidates = self
            .store
            .run(move |conn| {
                transactions::abandoned(conn, older_than, now(), BATCH).map_err(StoreError::from)
            })
            .await?;
        let mut settled = 0;
        for (pending, key) in candidates {
            if self.complete_one(pending, key).await? {
                settled += 1;
            }
        }
        Ok(settled)
    }

    async fn complete_one(
        &self,
        pending: transactions::TransactionRow,
        key: String,
    ) -> Result<bool, WalletError> {
        let lease = Lease {
            token: Uuid::new_v4().to_string(),
            until: now() + self.lease,
        };
        let (taken_key, taken_lease) = (key.clone(), lease.clone());
        let won = self
            .store
            .run(move |conn| {
                idempotency_keys::take_over(
                    conn,
                    &taken_key,
                    &taken_lease.token,
                    now(),
                    taken_lease.until,
                )
                .map_err(StoreError::from)
            })
            .await?;
        if !won {
            return Ok(false);
        }
        let Ok(permit) = self.breaker.admit() else {
            self.release(&key, lease).await;
            return Ok(false);
        };
        let correlation_id = pending
            .correlation_id
            .clone()
            .unwrap_or_else(|| format!("completer-{}", pending.id));
        let call = operator_call(&pending, &correlation_id)?;
        let answered = self.operator.execute(&call, false).await;
        if let Some(open_for) = permit.record(answered.is_ok()) {
            self.governor.open_circuit(open_for).await;
        }
        let Ok(decision) = answered else {
            self.release(&key, lease).await;
            return Ok(false);
        };
        tracing::info!(transaction_id = %pending.id, correlation_id = %correlation_id, "completing an abandoned transaction");
        let settled = self
            .settle(key, lease, pending, decision, correlation_id)
            .await?;
        Ok(settled.is_some())
    }

    /// Deletes completed keys past their retention, in batches; returns how many.
    pub async fn reap_keys(&self, retention: Duration) -> Result<usize, WalletError> {
        let before = now() - TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
        let mut total = 0;
        loop {
            let reaped = self
                .store
                .run(move |conn| {
                    idempotency_keys::reap(conn, before, 500).map_err(StoreError::from)
                })
                .await?;
            total += reaped;
            if reaped < 500 {
                return Ok(total);
            }
        }
    }

    /// Runs the completer and the reaper every `config.every` until cancelled.
    pub async fn recover_until_cancelled(self, config: RecoveryConfig, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            match self.complete_abandoned(config.abandoned_after).await {
                Ok(0) => {}
                Ok(settled) => tracing::info!(settled, "completed abandoned transactions"),
                Err(error) => tracing::warn!(%error, "the completer could not run; will try again"),
            }
            match self.reap_keys(config.key_retention).await {
                Ok(0) => {}
                Ok(reaped) => {
                    tracing::info!(reaped, "deleted idempotency keys past their retention")
                }
                Err(error) => {
                    tracing::warn!(%error, "the key reaper could not run; will try again")
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(config.every) => {}
            }
        }
    }
}
