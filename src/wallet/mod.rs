//! The debit/credit flow: idempotent, recoverable, and never charging twice.
//!
//! The operator is called with no database connection held and no database transaction
//! open; what it decides is written in one database transaction together with the outbox
//! row and the stored answer (see [`phases`]).

pub mod balance;
pub mod completer;
mod event;
mod phases;
pub mod receipt;
pub mod review;
pub mod rollback;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use tokio::sync::Notify;

use crate::domain::instant::{earlier_by, later_by};
use crate::domain::{IdempotencyKey, TransactionKind, WalletRequest};
use crate::metrics::Metrics;
use crate::operator::{CircuitBreaker, Governor, OperatorCall, OperatorClient, Refusal};
use crate::store::claims::{ClaimInsert, ClaimWrite};
use crate::store::group_commit::GroupCommit;
use crate::store::settlements::SettleWrite;
use crate::store::transactions::TransactionRow;
use crate::store::{Store, StoreError};
use completer::RecoveryConfig;
use phases::{ClaimTimes, Claimed, Lease};
pub use receipt::Receipt;
use rollback::Requester;
pub use rollback::RollbackCommand;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    #[error("this debit's outcome is unknown and its resume window has passed: it will never be charged, and the hub cancels it with a rollback")]
    ResumeWindowPassed,
    #[error("this refId is already used by another request")]
    DuplicateRefId,
    #[error("a rollback for this refId was recorded first: this debit will never be charged")]
    TransactionRolledBack,
    #[error("this debit was already rolled back by another request")]
    AlreadyRolledBack { rollback_transaction_id: String },
    #[error("only a debit can be rolled back; originalRefId names another kind of transaction")]
    NotRollbackable,
    #[error("originalRefId names a debit of another player or another round")]
    RollbackMismatch,
    #[error("the operator does not know this player")]
    PlayerNotFound,
    #[error("the player's wallet is in another currency")]
    CurrencyMismatch,
    #[error("the operator could not be reached; retry with the same Idempotency-Key")]
    OperatorUnavailable { retry_after: Option<Duration> },
    #[error("the operator is failing; calls are paused (nothing was recorded), retry later")]
    CircuitOpen { retry_after: Duration },
    #[error("the operator's rate limit leaves no room within the deadline (nothing was recorded), retry later")]
    RateLimited { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invariant broken: {0}")]
    Invariant(String),
}

impl From<diesel::result::Error> for WalletError {
    fn from(error: diesel::result::Error) -> Self {
        WalletError::Store(StoreError::from(error))
    }
}

#[derive(Debug, Clone)]
pub struct WalletCommand {
    pub kind: TransactionKind,
    pub key: IdempotencyKey,
    pub request: WalletRequest,
    pub correlation_id: String,
}

/// A pending transaction this request holds the key's lease for.
struct Owned {
    key: IdempotencyKey,
    lease: Lease,
    pending: TransactionRow,
    correlation_id: String,
}

#[derive(Clone)]
pub struct WalletService {
    store: Store,
    operator: OperatorClient,
    /// How long a request owns its key; longer than the operator deadline so that a live
    /// request is never overtaken, short enough that a crashed one is resumed soon.
    lease: Duration,
    /// Wakes this process's outbox drainer once a webhook is committed.
    outbox_wake: Arc<Notify>,
    breaker: Arc<CircuitBreaker>,
    governor: Arc<Governor>,
    operator_deadline: Duration,
    recovery: RecoveryConfig,
    metrics: Arc<Metrics>,
    /// First requests' keys and transactions, grouped into shared commits.
    claims: GroupCommit<ClaimWrite>,
    /// Operator decisions with their webhooks and stored answers, grouped likewise.
    settlements: GroupCommit<SettleWrite>,
}

/// What the wallet flow needs besides its store and operator client.
pub struct WalletParts {
    pub breaker: Arc<CircuitBreaker>,
    pub governor: Arc<Governor>,
    pub operator_deadline: Duration,
    /// The recovery policy; its lease margin is added to the deadline for a key's lease:
    /// how long after a crash a retry (or the completer) may take the key over.
    pub recovery: RecoveryConfig,
    pub outbox_wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

impl WalletService {
    pub fn new(store: Store, operator: OperatorClient, parts: WalletParts) -> Self {
        let claims = store.group_commit(ClaimWrite, parts.metrics.clone());
        let settlements = store.group_commit(SettleWrite, parts.metrics.clone());
        Self {
            claims,
            settlements,
            store,
            operator,
            lease: parts.operator_deadline + parts.recovery.lease_margin,
            outbox_wake: parts.outbox_wake,
            breaker: parts.breaker,
            governor: parts.governor,
            operator_deadline: parts.operator_deadline,
            recovery: parts.recovery,
            metrics: parts.metrics,
        }
    }

    #[tracing::instrument(skip_all, fields(kind = command.kind.as_str(), ref_id = %command.request.ref_id))]
    pub async fn execute(&self, command: WalletCommand) -> Result<Receipt, WalletError> {
        let started = std::time::Instant::now();
        let mut operator_time = Duration::ZERO;
        let result = self.run_phases(command, &mut operator_time).await;
        self.observe_overhead(started, operator_time);
        result
    }

    /// `POST /wallet/rollback`: cancels a debit exactly once (see [`rollback`]).
    #[tracing::instrument(skip_all, fields(kind = "ROLLBACK", ref_id = %command.request.ref_id, original_ref_id = %command.request.original_ref_id))]
    pub async fn rollback(&self, command: RollbackCommand) -> Result<Receipt, WalletError> {
        let started = std::time::Instant::now();
        let mut operator_time = Duration::ZERO;
        let result = self.run_rollback(command, &mut operator_time).await;
        self.observe_overhead(started, operator_time);
        result
    }

    fn observe_overhead(&self, started: std::time::Instant, operator_time: Duration) {
        let overhead = started.elapsed().saturating_sub(operator_time);
        self.metrics.wallet_overhead.observe(overhead.as_secs_f64());
    }

    async fn run_rollback(
        &self,
        command: RollbackCommand,
        operator_time: &mut Duration,
    ) -> Result<Receipt, WalletError> {
        // A rollback that needs no operator call (a rejected debit, a tombstone) is recorded
        // even while the circuit is open; one that does takes its slot in the client.
        let permit = self.breaker.admit().map_err(Refusal::CircuitOpen);
        let times = self.claim_times(TransactionKind::Rollback);
        let claim_command = command.clone();
        let may_call = permit.is_ok();
        let claimed = self
            .store
            .run(move |conn| {
                rollback::claim(conn, &claim_command, Requester::Client, times, may_call)
            })
            .await?;
        match (claimed, permit) {
            (Claimed::Answered(receipt), _) => {
                // Recorded by this claim (a tombstone, a rejected debit's): its event waits.
                if !receipt.replayed {
                    self.outbox_wake.notify_one();
                }
                Ok(receipt)
            }
            (Claimed::Owned { transaction, lease }, Ok(permit)) => {
                let owned = Owned {
                    key: command.key,
                    lease,
                    pending: *transaction,
                    correlation_id: command.correlation_id,
                };
                self.call_and_settle(owned, permit, false, operator_time)
                    .await
            }
            (_, Err(Refusal::CircuitOpen(retry_after) | Refusal::RateLimited(retry_after))) => {
                Err(WalletError::CircuitOpen { retry_after })
            }
            (Claimed::Refused, Ok(_)) => Err(WalletError::Invariant(
                "a rollback claim refused although the operator may be called".into(),
            )),
        }
    }

    async fn run_phases(
        &self,
        command: WalletCommand,
        operator_time: &mut Duration,
    ) -> Result<Receipt, WalletError> {
        // While the circuit is open, or no slot to call the operator comes in time, the key is
        // still answered from the database, but no new transaction is recorded: the client's
        // retry later starts cleanly.
        let permit = self.breaker.admit().map_err(Refusal::CircuitOpen);
        // A new key reserves its first operator slot before anything is recorded. A known key
        // (replay, conflict, resumption) does not queue for one here: a resumption gets its
        // slot in the operator client like any retry. Only a pacing governor can make a
        // request wait, so only then is it worth looking the key up first.
        let (slot, first_slot_taken) = match &permit {
            Ok(_) if !self.governor.paces() || !self.key_exists(&command.key).await? => {
                let slot = self.governor.acquire(self.operator_deadline).await;
                (slot, slot.is_ok())
            }
            Ok(_) => (Ok(()), false),
            Err(refusal) => (Err(*refusal), false),
        };
        if let Err(Refusal::RateLimited(retry_after)) = slot {
            return Err(WalletError::RateLimited { retry_after });
        }
        let times = self.claim_times(command.kind);
        let claimed = match slot {
            Ok(()) => self.claim(&command, times).await?,
            Err(_) => {
                let claim_command = command.clone();
                self.store
                    .run(move |conn| phases::claim(conn, &claim_command, times, false))
                    .await?
            }
        };
        let (pending, lease, permit) = match (claimed, permit, slot) {
            (Claimed::Answered(receipt), _, _) => return Ok(receipt),
            (Claimed::Owned { transaction, lease }, Ok(permit), Ok(())) => {
                (transaction, lease, permit)
            }
            (_, Err(refusal), _) | (_, _, Err(refusal)) => {
                let (Refusal::CircuitOpen(retry_after) | Refusal::RateLimited(retry_after)) =
                    refusal;
                return Err(WalletError::CircuitOpen { retry_after });
            }
            (Claimed::Refused, Ok(_), Ok(())) => {
                return Err(WalletError::Invariant(
                    "a claim refused although the operator may be called".into(),
                ))
            }
        };
        let owned = Owned {
            key: command.key,
            lease,
            pending: *pending,
            correlation_id: command.correlation_id,
        };
        self.call_and_settle(owned, permit, first_slot_taken, operator_time)
            .await
    }

    /// Phases 2 and 3 for a transaction this request owns: call the operator, then write
    /// its decision, or leave the transaction `PENDING` for a retry with the same key.
    async fn call_and_settle(
        &self,
        owned: Owned,
        permit: crate::operator::breaker::Permit,
        first_slot_taken: bool,
        operator_time: &mut Duration,
    ) -> Result<Receipt, WalletError> {
        let call = operator_call(&owned.pending, &owned.correlation_id)?;
        let calling = std::time::Instant::now();
        let budget = self.operator_budget(&owned.pending);
        let answered = self.operator.execute(&call, first_slot_taken, budget).await;
        *operator_time = calling.elapsed();
        if let Some(open_for) = permit.record(answered.is_ok()) {
            self.governor.open_circuit(open_for).await;
        }
        match answered {
            Ok(decision) => {
                let key = owned.key.as_str().to_owned();
                let settled = self
                    .settle(
                        key,
                        owned.lease,
                        owned.pending,
                        decision,
                        owned.correlation_id,
                    )
                    .await?;
                match settled {
                    Some(receipt) => Ok(receipt),
                    None => self.answer_after_lost_lease(owned.key).await,
                }
            }
            // Whatever went wrong, the operator may have applied the call: leave the
            // transaction PENDING for the retry with the same key.
            Err(error) => {
                let retry_after = error.retry_after();
                self.release(owned.key.as_str(), owned.lease).await;
                Err(WalletError::OperatorUnavailable { retry_after })
            }
        }
    }

    /// How long the operator may be called for `pending`: a debit's last attempt must start
    /// inside its resume window, so that a bet is never charged after the game gave up.
    fn operator_budget(&self, pending: &TransactionRow) -> Duration {
        if pending.kind != TransactionKind::Debit.as_str() {
            return self.operator_deadline;
        }
        let window_ends = later_by(pending.created_at, self.recovery.debit_resume_window);
        (window_ends - now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(self.operator_deadline)
    }

    fn claim_times(&self, kind: TransactionKind) -> ClaimTimes {
        let now = now();
        // A debit is only ever resumed by its client; the completer looks at it once its
        // resume window has passed. Credits are driven forward after `abandoned_after`.
        let recovery_after = match kind {
            TransactionKind::Debit => self.recovery.debit_resume_window,
            TransactionKind::Credit | TransactionKind::Rollback => self.recovery.abandoned_after,
        };
        ClaimTimes {
            now,
            lease_until: later_by(now, self.lease),
            recovery_due_at: later_by(now, recovery_after),
            debits_resumable_since: earlier_by(now, self.recovery.debit_resume_window),
        }
    }

    /// Phase 1 when the operator may be called: a first request's key and transaction go
    /// in with other requests' (group commit); one that collides with what is stored (a
    /// replay, a reused key or refId, a resumption) is decided from what is stored.
    async fn claim(
        &self,
        command: &WalletCommand,
        times: ClaimTimes,
    ) -> Result<Claimed, WalletError> {
        let fingerprint = command.request.fingerprint(command.kind);
        let lease = phases::new_lease(times);
        let fresh = phases::fresh_claim(command, &fingerprint, times, &lease);
        let transaction = fresh.transaction.clone();
        match self.claims.submit(fresh).await? {
            ClaimInsert::Inserted => Ok(Claimed::Owned {
                transaction: Box::new(transaction),
                lease,
            }),
            ClaimInsert::Taken => {
                let command = command.clone();
                self.store
                    .run(move |conn| phases::claim(conn, &command, times, true))
                    .await
            }
        }
    }

    /// Another request took the key over while we waited on the operator; its answer, once
    /// stored, is the answer.
    async fn answer_after_lost_lease(&self, key: IdempotencyKey) -> Result<Receipt, WalletError> {
        tracing::warn!("lease lost while calling the operator; deferring to the new owner");
        let key = key.as_str().to_owned();
        let stored = self
            .store
            .run(move |conn| phases::stored_answer(conn, &key))
            .await?;
        stored.ok_or(WalletError::InProgress)
    }

    /// Whether the key is known already (a replay, a conflict or a resumption needs no new slot).
    async fn key_exists(&self, key: &IdempotencyKey) -> Result<bool, WalletError> {
        let key = key.as_str().to_owned();
        self.store
            .run(move |conn| phases::key_exists(conn, &key))
            .await
    }

    /// Writes the operator's decision (phase 3) with other requests' (group commit) and
    /// wakes the drainer; `None` when the lease was lost to another request, in which case
    /// nothing was written.
    async fn settle(
        &self,
        key: String,
        lease: Lease,
        pending: TransactionRow,
        decision: crate::operator::Decision,
        correlation_id: String,
    ) -> Result<Option<Receipt>, WalletError> {
        let (row, receipt) =
            phases::settlement(&key, &lease, &pending, &decision, &correlation_id, now());
        if !self.settlements.submit(row).await? {
            return Ok(None);
        }
        self.outbox_wake.notify_one();
        Ok(Some(receipt))
    }

    /// Gives a key's lease up early, so that a retry (or the completer) can resume at once.
    /// If this fails the lease simply runs out; the transaction stays `PENDING` either way.
    async fn release(&self, key: &str, lease: Lease) {
        let key = key.to_owned();
        let released = self
            .store
            .run(move |conn| phases::release(conn, &key, &lease, now()))
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "could not release the idempotency lease; it will lapse on its own");
        }
    }
}

fn operator_call(
    pending: &TransactionRow,
    correlation_id: &str,
) -> Result<OperatorCall, WalletError> {
    let invalid =
        |what: &str| WalletError::Invariant(format!("transaction {} has {what}", pending.id));
    Ok(OperatorCall {
        kind: TransactionKind::parse(&pending.kind).ok_or_else(|| invalid("an unknown kind"))?,
        transaction_id: pending.id.clone(),
        original_transaction_id: pending.original_transaction_id.clone(),
        player_id: pending.player_id.clone(),
        amount_minor: pending.amount_cents,
        currency: crate::domain::Currency::from_iso_code(&pending.currency)
            .ok_or_else(|| invalid("an unknown currency"))?,
        description: format!(
            "{} refId={}",
            pending.kind.to_ascii_lowercase(),
            pending.ref_id
        ),
        correlation_id: correlation_id.to_owned(),
    })
}
