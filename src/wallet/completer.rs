//! The recovery policy (DESIGN §8) for transactions whose outcome is unknown, and the key
//! reaper.
//!
//! Every `PENDING` transaction has its own place in the completer's queue
//! (`next_recovery_at`, `recovery_attempts`). A round takes the due ones, fewest rounds
//! first, reschedules each with a growing, jittered backoff before anything else happens,
//! and acts on them concurrently; so one that keeps failing never delays the others, and a
//! crash mid-round loses nothing.
//!
//! - A **credit** or a **rollback** is driven forward as the client's retry would: the
//!   completer must win the key's lease (so no two replicas, and no returning client,
//!   resolve one transaction at once), calls the operator with the same transaction id (an
//!   applied call is answered, not repeated) and settles transaction, webhook and stored
//!   answer in one database transaction. Past `manual_review_after` it is flagged for
//!   review and still retried.
//! - A **debit** is resumed only by its own client within `debit_resume_window`; once that
//!   has passed nobody is waiting for the bet, so it is never charged late: the completer
//!   cancels it with a rollback of its own ([`super::rollback`]), refunded if the operator
//!   had charged it, which from then on is driven forward like any rollback.
//!
//! The completer's calls stay out of the circuit breaker's statistics (they are retries of
//! calls that already failed) and are not made while the circuit is not closed.

use std::time::Duration;

use chrono::NaiveDateTime;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::phases::{Claimed, Lease};
use super::rollback::{self, Requester};
use super::{now, operator_call, WalletError, WalletService};
use crate::domain::instant::{earlier_by, later_by};
use crate::domain::TransactionKind;
use crate::operator::BreakerState;
use crate::store::transactions::{self, Reschedule, TransactionRow};
use crate::store::{idempotency_keys, StoreError};
use crate::supervisor::LoopHealth;

#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// A `PENDING` credit is driven forward once this old (and its key's lease has lapsed).
    pub abandoned_after: Duration,
    /// How long a `PENDING` debit may be resumed by its client's retry.
    pub debit_resume_window: Duration,
    /// A transaction still `PENDING` this long after it was created is flagged for review.
    pub manual_review_after: Duration,
    /// The wait before the completer's next round on one transaction: `initial`, doubling
    /// with each round, at most `max`, each ±20 %.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Transactions the completer acts on at once.
    pub concurrency: usize,
    pub every: Duration,
    /// Completed idempotency keys older than this are deleted (their transaction still
    /// answers a replay, and its refId still guards).
    pub key_retention: Duration,
    /// See [`super::WalletParts::recovery`].
    pub lease_margin: Duration,
}

impl RecoveryConfig {
    /// When a transaction taken for its `round`-th time (1-based) is due again.
    fn backoff_after(&self, round: i32) -> Duration {
        let doublings = u32::try_from(round.saturating_sub(1)).unwrap_or(0).min(20);
        let wait = self
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.backoff_max);
        wait.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
    }

    /// Whether `row` is a debit its client may still resume.
    fn resumable(&self, row: &TransactionRow, now: NaiveDateTime) -> bool {
        row.kind == TransactionKind::Debit.as_str()
            && later_by(row.created_at, self.debit_resume_window) > now
    }

    /// What a round does to a due transaction before acting on it.
    fn reschedule(&self, row: &TransactionRow, now: NaiveDateTime) -> Reschedule {
        // Due early only if queued before this policy existed: its client may still come.
        if self.resumable(row, now) {
            return Reschedule {
                next_recovery_at: Some(later_by(row.created_at, self.debit_resume_window)),
                flag_for_review: false,
            };
        }
        Reschedule {
            next_recovery_at: Some(later_by(
                now,
                self.backoff_after(row.recovery_attempts.saturating_add(1)),
            )),
            flag_for_review: row.created_at <= earlier_by(now, self.manual_review_after),
        }
    }
}

/// What one round did with one transaction: the `result` label of
/// `hub_recovery_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovered {
    Settled,
    /// The operator gave no wallet status in time; due again later.
    Unknown,
    /// Its client (or another replica) holds the key right now.
    LeaseHeld,
    CircuitNotClosed,
    /// A debit past its resume window, cancelled by the hub's rollback (settled, or
    /// recorded and driven forward from now on as a rollback).
    Cancelled,
    /// A debit that settled meanwhile, or one a rollback already decides.
    NothingToCancel,
    /// A debit still inside its resume window: only its client may resume it.
    NotDueYet,
}

impl Recovered {
    fn label(self) -> &'static str {
        match self {
            Recovered::Settled => "settled",
            Recovered::Unknown => "unknown",
            Recovered::LeaseHeld => "lease_held",
            Recovered::CircuitNotClosed => "circuit_not_closed",
            Recovered::Cancelled => "cancelled",
            Recovered::NothingToCancel => "nothing_to_cancel",
            Recovered::NotDueYet => "not_due_yet",
        }
    }
}

impl WalletService {
    /// One round of the recovery policy; returns how many transactions it took.
    pub async fn recover_round(&self) -> Result<usize, WalletError> {
        // While the circuit is not closed no round is spent: taking transactions would push
        // their schedules back without a call.
        if self.breaker.state() != BreakerState::Closed {
            return Ok(0);
        }
        let round_at = now();
        let policy = self.recovery.clone();
        let limit = i64::try_from(policy.concurrency).unwrap_or(i64::MAX);
        let taken = self
            .store
            .run(move |conn| {
                transactions::take_due(conn, round_at, limit, |row| {
                    policy.reschedule(row, round_at)
                })
            })
            .await?;
        let count = taken.len();
        let outcomes =
            futures_util::future::join_all(taken.into_iter().map(|row| async move {
                // `take_due` stamps a transaction it flags with the round's own time.
                if row.review_since == Some(round_at) {
                    tracing::warn!(transaction_id = %row.id, kind = %row.kind, ref_id = %row.ref_id, "transaction flagged for manual review");
                }
                self.recover_one(row).await
            }))
            .await;
        // Every outcome is counted; a failed one does not hide the others.
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(recovered) => self
                    .metrics
                    .recovery_attempts
                    .with_label_values(&[recovered.label()])
                    .inc(),
                Err(error) => {
                    tracing::warn!(%error, "a recovery attempt failed; it is due again later");
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let under_review = self
            .store
            .run(|conn| transactions::count_under_review(conn).map_err(StoreError::from))
            .await?;
        self.metrics.under_review.set(under_review);
        Ok(count)
    }

    async fn recover_one(&self, pending: TransactionRow) -> Result<Recovered, WalletError> {
        if self.breaker.state() != BreakerState::Closed {
            return Ok(Recovered::CircuitNotClosed);
        }
        if pending.kind == TransactionKind::Debit.as_str() {
            if self.recovery.resumable(&pending, now()) {
                return Ok(Recovered::NotDueYet);
            }
            return self.cancel_abandoned(pending).await;
        }
        let lease = Lease {
            token: Uuid::new_v4().to_string(),
            until: later_by(now(), self.lease),
        };
        let (taken_key, taken_lease) = (pending.idempotency_key.clone(), lease.clone());
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
            return Ok(Recovered::LeaseHeld);
        }
        self.drive_forward(pending, lease).await
    }

    /// Cancels a debit nobody waits for any more with a rollback of the hub's own.
    async fn cancel_abandoned(&self, debit: TransactionRow) -> Result<Recovered, WalletError> {
        let command = rollback::cancellation_of(&debit);
        let mut times = self.claim_times(TransactionKind::Rollback);
        times.recovery_due_at = later_by(times.now, self.recovery.backoff_initial);
        let claimed = self
            .store
            .run(move |conn| rollback::claim(conn, &command, Requester::Hub, times, true))
            .await;
        tracing::warn!(transaction_id = %debit.id, ref_id = %debit.ref_id, "a debit's outcome is unknown past its resume window: cancelling it with a rollback");
        match claimed {
            Ok(Claimed::Owned { transaction, lease }) => {
                self.drive_forward(*transaction, lease).await?;
                Ok(Recovered::Cancelled)
            }
            Ok(Claimed::Answered(_)) => Ok(Recovered::Cancelled),
            Ok(Claimed::Refused) | Err(WalletError::AlreadyRolledBack { .. }) => {
                Ok(Recovered::NothingToCancel)
            }
            Err(WalletError::InProgress) => Ok(Recovered::LeaseHeld),
            Err(error) => Err(error),
        }
    }

    /// Calls the operator for a transaction whose key lease this round holds, bounded by one
    /// attempt, and settles it; an unknown answer leaves it for a later round.
    async fn drive_forward(
        &self,
        pending: TransactionRow,
        lease: Lease,
    ) -> Result<Recovered, WalletError> {
        let key = pending.idempotency_key.clone();
        let correlation_id = pending
            .correlation_id
            .clone()
            .unwrap_or_else(|| format!("completer-{}", pending.id));
        let call = operator_call(&pending, &correlation_id)?;
        let budget = self.operator.attempt_timeout();
        let Ok(decision) = self.operator.execute_within(&call, budget).await else {
            self.release(&key, lease).await;
            return Ok(Recovered::Unknown);
        };
        tracing::info!(transaction_id = %pending.id, kind = %pending.kind, correlation_id = %correlation_id, attempt = pending.recovery_attempts, "the completer resolved a transaction");
        let settled = self
            .settle(key, lease, pending, decision, correlation_id)
            .await?;
        Ok(match settled {
            Some(_) => Recovered::Settled,
            None => Recovered::LeaseHeld,
        })
    }

    /// Runs the completer until cancelled: a new round at once while rounds come back full,
    /// otherwise every `config.every`. An error ends the run for the supervisor to restart.
    pub async fn recover_until_cancelled(
        self,
        cancel: CancellationToken,
        health: LoopHealth,
    ) -> Result<(), WalletError> {
        while !cancel.is_cancelled() {
            let taken = self.recover_round().await?;
            health.round_succeeded();
            if taken == self.recovery.concurrency {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(self.recovery.every) => {}
            }
        }
        Ok(())
    }

    /// Deletes completed keys past their retention, in batches; returns how many.
    pub async fn reap_keys(&self, retention: Duration) -> Result<usize, WalletError> {
        let before = earlier_by(now(), retention);
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

    /// Runs the key reaper every `config.every` until cancelled.
    pub async fn reap_until_cancelled(
        self,
        cancel: CancellationToken,
        health: LoopHealth,
    ) -> Result<(), WalletError> {
        while !cancel.is_cancelled() {
            let reaped = self.reap_keys(self.recovery.key_retention).await?;
            if reaped > 0 {
                tracing::info!(reaped, "deleted idempotency keys past their retention");
            }
            health.round_succeeded();
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(self.recovery.every) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn pending(kind: TransactionKind, created_at: NaiveDateTime) -> TransactionRow {
        TransactionRow {
            id: "t".into(),
            idempotency_key: "k".into(),
            ref_id: "r".into(),
            player_id: "p".into(),
            kind: kind.as_str().into(),
            amount_cents: 100,
            currency: "USD".into(),
            status: transactions::PENDING.into(),
            reason: None,
            balance_cents: None,
            operator_reference: None,
            meta: None,
            correlation_id: None,
            created_at,
            updated_at: created_at,
            recovery_attempts: 0,
            next_recovery_at: Some(created_at),
            review_since: None,
            round_id: None,
            round_closed: false,
            original_ref_id: None,
            original_transaction_id: None,
        }
    }

    #[test]
    fn a_debit_waits_for_its_client_until_its_resume_window_has_passed() {
        let now = Utc::now().naive_utc();
        let young = pending(
            TransactionKind::Debit,
            earlier_by(now, Duration::from_secs(10)),
        );
        assert!(policy().resumable(&young, now));
        let plan = policy().reschedule(&young, now);
        assert_eq!(
            plan.next_recovery_at,
            Some(later_by(young.created_at, Duration::from_secs(60)))
        );
        assert!(!plan.flag_for_review);
        let old = pending(
            TransactionKind::Debit,
            earlier_by(now, Duration::from_secs(61)),
        );
        assert!(!policy().resumable(&old, now));
        let plan = policy().reschedule(&old, now);
        assert!(plan.next_recovery_at.is_some_and(|at| at > now));
        assert!(!plan.flag_for_review);
    }

    #[test]
    fn a_credit_is_flagged_past_the_review_age_and_still_rescheduled() {
        let now = Utc::now().naive_utc();
        let young = pending(
            TransactionKind::Credit,
            earlier_by(now, Duration::from_secs(60)),
        );
        let plan = policy().reschedule(&young, now);
        assert!(!plan.flag_for_review);
        assert!(plan.next_recovery_at.is_some_and(|at| at > now));
        let old = pending(
            TransactionKind::Credit,
            earlier_by(now, Duration::from_secs(3600)),
        );
        let plan = policy().reschedule(&old, now);
        assert!(plan.flag_for_review);
        assert!(plan.next_recovery_at.is_some_and(|at| at > now));
    }

    fn policy() -> RecoveryConfig {
        RecoveryConfig {
            abandoned_after: Duration::from_secs(60),
            debit_resume_window: Duration::from_secs(60),
            manual_review_after: Duration::from_secs(3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            concurrency: 8,
            every: Duration::from_secs(5),
            key_retention: Duration::from_secs(86_400),
            lease_margin: Duration::from_secs(15),
        }
    }

    #[test]
    fn the_backoff_doubles_from_one_second_to_five_minutes_with_jitter() {
        for (round, seconds) in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0)] {
            let wait = policy().backoff_after(round).as_secs_f64();
            assert!(
                (seconds * 0.8..=seconds * 1.2).contains(&wait),
                "round {round}: {wait}"
            );
        }
        let far = policy().backoff_after(i32::MAX).as_secs_f64();
        assert!((240.0..=360.0).contains(&far), "{far}");
    }
}
