//! The database phases of a wallet call. Each runs in one database transaction and is a
//! recovery point: a crash between phases leaves a state the client's retry resumes from.
//!
//! 1. Claim: a first request's key and `PENDING` transaction ([`fresh_claim`]) go in with
//!    other requests' in one group commit (`store::claims`). A claim that collides with
//!    what is stored is decided by [`claim`]: from the stored key (replay, 422, 409), by
//!    resuming a `PENDING` one whose lease lapsed (a debit only within its resume window),
//!    or, for a key already reaped, from the transaction it made.
//! 2. (outside any database transaction) call the operator with the transaction's id.
//! 3. Settle: finish the transaction, insert its outbox row and store the answer on the key
//!    ([`settlement`]), grouped with other requests' in one commit (`store::settlements`).

use chrono::NaiveDateTime;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use uuid::Uuid;

use super::receipt::{self, Receipt};
use super::{event, WalletCommand, WalletError};
use crate::domain::request;
use crate::domain::{Round, TransactionKind};
use crate::operator::Decision;
use crate::store::claims::NewClaim;
use crate::store::idempotency_keys::{self, KeyRow};
use crate::store::outbox::{self, NewOutboxRow};
use crate::store::settlements::SettleRow;
use crate::store::transactions::{self, Settlement, TransactionRow};
use crate::store::DbConnection;

/// Who may act on a key: whoever holds its lease token until `locked_until`.
#[derive(Debug, Clone)]
pub struct Lease {
    pub token: String,
    pub until: NaiveDateTime,
}

#[derive(Debug)]
pub enum Claimed {
    /// This request owns the pending transaction and must call the operator.
    Owned {
        transaction: Box<TransactionRow>,
        lease: Lease,
    },
    /// The key has its final answer: stored before (a replay), or decided by this claim
    /// without the operator (a rollback of a rejected debit, a tombstone).
    Answered(Receipt),
    /// Going on would need the operator, and new work was not allowed (circuit open).
    Refused,
}

/// The moments a claim is decided against.
#[derive(Debug, Clone, Copy)]
pub struct ClaimTimes {
    pub now: NaiveDateTime,
    pub lease_until: NaiveDateTime,
    /// When the completer first looks at the transaction if it is left `PENDING`.
    pub recovery_due_at: NaiveDateTime,
    /// A `PENDING` debit created before this is not resumed: nobody waits for the bet now.
    pub debits_resumable_since: NaiveDateTime,
}

/// `may_call_operator` false (the circuit is open) still answers from the stored key, but
/// never creates a transaction or takes a lapsed key over: it answers [`Claimed::Refused`].
pub fn claim(
    conn: &mut DbConnection,
    command: &WalletCommand,
    times: ClaimTimes,
    may_call_operator: bool,
) -> Result<Claimed, WalletError> {
    let lease = new_lease(times);
    let fingerprint = command.request.fingerprint(command.kind);
    let claimed = conn.write_transaction(|conn| {
        let NewClaim { key, transaction } = fresh_claim(command, &fingerprint, times, &lease);
        let existing = Existing {
            key: command.key.as_str(),
            fingerprint: &fingerprint,
            times,
        };
        if !may_call_operator {
            return match idempotency_keys::find(conn, command.key.as_str())? {
                Some(_) => existing.decide(conn, lease.clone(), false),
                // A tombstoned debit is refused as such, with or without the operator.
                None if command.kind == TransactionKind::Debit
                    && tombstone_for(conn, &command.request.ref_id)? =>
                {
                    Err(WalletError::TransactionRolledBack)
                }
                None => Ok(Claimed::Refused),
            };
        }
        if idempotency_keys::insert_if_absent(conn, &key)? {
            return match transactions::insert(conn, &transaction) {
                Ok(()) => Ok(Claimed::Owned {
                    transaction: Box::new(transaction),
                    lease: lease.clone(),
                }),
                // A fresh row collides on its refId, or on its key when the key was reaped
                // since it made a transaction: told apart below, once this one is undone.
                Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                    Err(WalletError::DuplicateRefId)
                }
                Err(error) => Err(error.into()),
            };
        }
        existing.decide(conn, lease.clone(), true)
    });
    match claimed {
        Err(WalletError::DuplicateRefId) => {
            if let Some(answer) = answer_for_reaped_key(conn, command.key.as_str(), &fingerprint)? {
                return Ok(answer);
            }
            if command.kind == TransactionKind::Debit
                && tombstone_for(conn, &command.request.ref_id)?
            {
                return Err(WalletError::TransactionRolledBack);
            }
            Err(WalletError::DuplicateRefId)
        }
        other => other,
    }
}

/// A new lease for a claim.
pub fn new_lease(times: ClaimTimes) -> Lease {
    Lease {
        token: Uuid::new_v4().to_string(),
        until: times.lease_until,
    }
}

/// The key and PENDING transaction a first request under its key makes, under `lease`.
pub fn fresh_claim(
    command: &WalletCommand,
    fingerprint: &str,
    times: ClaimTimes,
    lease: &Lease,
) -> NewClaim {
    let transaction = new_transaction(command, times);
    let key = KeyRow {
        idempotency_key: command.key.as_str().to_owned(),
        fingerprint: fingerprint.to_owned(),
        state: idempotency_keys::IN_PROGRESS.to_owned(),
        transaction_id: transaction.id.clone(),
        lease_token: Some(lease.token.clone()),
        locked_until: Some(lease.until),
        response_status: None,
        response_body: None,
        created_at: times.now,
        updated_at: times.now,
    };
    NewClaim { key, transaction }
}

/// Whether a rollback of a refId the hub never saw (a tombstone) forbids `ref_id`.
fn tombstone_for(conn: &mut DbConnection, ref_id: &str) -> Result<bool, WalletError> {
    Ok(transactions::rollback_of(conn, ref_id)?
        .is_some_and(|rollback| rollback.original_transaction_id.is_none()))
}

/// A key whose row is gone (reaped) but whose transaction stays: the same request gets the
/// first answer again, rebuilt from the transaction; another request under that key is a
/// reuse. `None` when the key never made a transaction.
pub(super) fn answer_for_reaped_key(
    conn: &mut DbConnection,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Claimed>, WalletError> {
    let Some(made) = transactions::find_by_idempotency_key(conn, key)? else {
        return Ok(None);
    };
    if fingerprint_of(&made) != fingerprint {
        return Err(WalletError::KeyReused);
    }
    if let Some(answer) = receipt::rebuild(&made) {
        return Ok(Some(Claimed::Answered(answer)));
    }
    // Unsettled, yet its key had an answer: a rollback overruled it (and decides it now).
    let overruled = made.kind == TransactionKind::Debit.as_str()
        && transactions::rollback_of(conn, &made.ref_id)?.is_some();
    if overruled {
        return Ok(Some(Claimed::Answered(Receipt {
            replayed: true,
            ..receipt::cancelled_debit(&made)
        })));
    }
    Err(WalletError::InProgress)
}

/// The fingerprint of the request that made `row`, from the row's own columns.
fn fingerprint_of(row: &TransactionRow) -> String {
    match (row.kind.as_str(), &row.original_ref_id) {
        ("ROLLBACK", Some(original_ref_id)) => request::rollback_fingerprint(
            &row.player_id,
            &row.ref_id,
            original_ref_id,
            row.round_id.as_deref(),
            row.meta.as_deref(),
        ),
        _ => request::fingerprint(
            &row.kind,
            &row.player_id,
            row.amount_cents,
            &row.currency,
            &row.ref_id,
            row.meta.as_deref(),
            &Round {
                id: row.round_id.clone(),
                closed: row.round_closed,
            },
        ),
    }
}

/// A key that already exists, and what its request must match.
pub(super) struct Existing<'a> {
    pub key: &'a str,
    pub fingerprint: &'a str,
    pub times: ClaimTimes,
}

impl Existing<'_> {
    pub fn decide(
        &self,
        conn: &mut DbConnection,
        lease: Lease,
        may_call_operator: bool,
    ) -> Result<Claimed, WalletError> {
        let key = self.key;
        // Absent only if a reaper removed it between our insert and this read: try again later.
        let existing = idempotency_keys::find(conn, key)?.ok_or(WalletError::InProgress)?;
        if existing.fingerprint != self.fingerprint {
            return Err(WalletError::KeyReused);
        }
        if let Some(receipt) = stored_receipt(&existing) {
            return Ok(Claimed::Answered(receipt));
        }
        if existing
            .locked_until
            .is_some_and(|until| until > self.times.now)
        {
            return Err(WalletError::InProgress);
        }
        if !may_call_operator {
            return Ok(Claimed::Refused);
        }
        let transaction = transactions::find(conn, &existing.transaction_id)?.ok_or_else(|| {
            WalletError::Invariant(format!(
                "key {key} points at missing transaction {}",
                existing.transaction_id
            ))
        })?;
        if transaction.kind == TransactionKind::Debit.as_str()
            && transaction.created_at < self.times.debits_resumable_since
        {
            return Err(WalletError::ResumeWindowPassed);
        }
        if !idempotency_keys::take_over(conn, key, &lease.token, self.times.now, lease.until)? {
            return Err(WalletError::InProgress);
        }
        tracing::info!(transaction_id = %transaction.id, "resuming a pending transaction");
        Ok(Claimed::Owned {
            transaction: Box::new(transaction),
            lease,
        })
    }
}

pub(super) fn stored_receipt(key: &KeyRow) -> Option<Receipt> {
    match (key.state.as_str(), key.response_status, &key.response_body) {
        (idempotency_keys::COMPLETED, Some(status), Some(body)) => Some(Receipt {
            status: u16::try_from(status).ok()?,
            body: body.clone(),
            replayed: true,
        }),
        _ => None,
    }
}

fn new_transaction(command: &WalletCommand, times: ClaimTimes) -> TransactionRow {
    let request = &command.request;
    let now = times.now;
    TransactionRow {
        id: Uuid::now_v7().to_string(),
        idempotency_key: command.key.as_str().to_owned(),
        ref_id: request.ref_id.clone(),
        player_id: request.player_id.clone(),
        kind: command.kind.as_str().to_owned(),
        amount_cents: request.amount_minor,
        currency: request.currency.code().to_owned(),
        status: transactions::PENDING.to_owned(),
        reason: None,
        balance_cents: None,
        operator_reference: None,
        meta: request.meta.clone(),
        correlation_id: Some(command.correlation_id.clone()),
        created_at: now,
        updated_at: now,
        recovery_attempts: 0,
        next_recovery_at: Some(times.recovery_due_at),
        review_since: None,
        round_id: request.round.id.clone(),
        round_closed: request.round.closed,
        original_ref_id: None,
        original_transaction_id: None,
    }
}

/// What settling `pending` with `decision` writes (see [`crate::store::settlements`]), and
/// the answer the client gets once it is written.
pub fn settlement(
    key: &str,
    lease: &Lease,
    pending: &TransactionRow,
    decision: &Decision,
    correlation_id: &str,
    now: NaiveDateTime,
) -> (SettleRow, Receipt) {
    let receipt = receipt::render(pending, decision);
    let settlement = settlement_of(decision, now);
    let settled = settlement.applied_to(pending);
    let row = SettleRow {
        key: key.to_owned(),
        lease_token: lease.token.clone(),
        response_status: receipt.status,
        response_body: receipt.body.clone(),
        transaction_id: pending.id.clone(),
        rolls_back: pending.original_transaction_id.clone(),
        event: outbox_row(&settled, correlation_id, now),
        settlement,
    };
    (row, receipt)
}

fn settlement_of(decision: &Decision, now: NaiveDateTime) -> Settlement {
    match decision {
        Decision::Approved {
            balance_minor,
            reference,
        } => Settlement {
            status: transactions::COMPLETED,
            reason: None,
            balance_cents: *balance_minor,
            operator_reference: reference.clone(),
            updated_at: now,
            next_recovery_at: None,
        },
        Decision::Declined { reason, .. } => Settlement {
            status: transactions::REJECTED,
            reason: Some(reason.code().to_owned()),
            balance_cents: None,
            operator_reference: None,
            updated_at: now,
            next_recovery_at: None,
        },
    }
}

pub(super) fn outbox_row(
    settled: &TransactionRow,
    correlation_id: &str,
    now: NaiveDateTime,
) -> NewOutboxRow {
    let event_type = match (settled.kind.as_str(), settled.status.as_str()) {
        ("ROLLBACK", _) => event::ROLLED_BACK,
        (_, transactions::COMPLETED) => event::COMPLETED,
        _ => event::REJECTED,
    };
    let event_id = Uuid::now_v7().to_string();
    NewOutboxRow {
        payload: event::payload(event_type, &event_id, settled, now),
        id: event_id,
        transaction_id: settled.id.clone(),
        event_type: event_type.to_owned(),
        status: outbox::PENDING,
        attempts: 0,
        next_attempt_at: now,
        correlation_id: Some(correlation_id.to_owned()),
        created_at: now,
        updated_at: now,
    }
}

/// The stored answer of a key, if it has one; used after losing a lease race.
pub fn stored_answer(conn: &mut DbConnection, key: &str) -> Result<Option<Receipt>, WalletError> {
    Ok(idempotency_keys::find(conn, key)?
        .as_ref()
        .and_then(stored_receipt))
}

pub fn release(
    conn: &mut DbConnection,
    key: &str,
    lease: &Lease,
    now: NaiveDateTime,
) -> Result<(), WalletError> {
    idempotency_keys::release(conn, key, &lease.token, now)?;
    Ok(())
}

pub fn key_exists(conn: &mut DbConnection, key: &str) -> Result<bool, WalletError> {
    Ok(idempotency_keys::find(conn, key)?.is_some())
}
