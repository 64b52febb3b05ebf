//! Rollbacks (DESIGN §8): a debit is cancelled exactly once, whatever state it is in, and
//! the player's money ends unchanged net.
//!
//! The operator cancels by the debit's own transaction id: it refunds what it charged, or
//! records that the id must never be applied (a late withdraw is answered `CANCELLED`).
//! Since the operator serialises the two, a rollback may be sent while the debit's own call
//! is still in flight: whichever reaches it first, the net is zero. The hub's side of the
//! same guarantee is in the database, decided by the claim below in one transaction:
//!
//! - **One rollback per debit.** Every rollback row carries the refId it cancels under a
//!   unique index, so two rollbacks (two keys, two replicas, or a client and the
//!   completer) collide there and the second is answered `ALREADY_ROLLED_BACK`.
//! - **A tombstone against a later debit.** A rollback of a refId the hub never saw is
//!   recorded; a debit's refId and a tombstone's original refId share one unique index, so
//!   the debit and the tombstone cannot both commit: the debit is refused without the
//!   operator, or the tombstone's claim finds the debit and rolls it back properly.
//! - **The rollback overrules the debit's key.** A debit still `PENDING` gets its final
//!   answer (409 `TRANSACTION_ROLLED_BACK`) when the rollback is claimed, before the
//!   operator hears of the rollback; the request still calling the operator for the debit
//!   then finds its lease gone and writes nothing, and no retry can resume it. From that
//!   moment only the rollback decides the debit: its settlement marks the debit
//!   `ROLLED_BACK`. Locks are taken in the debit settlement's order (key, then
//!   transaction), so the two never deadlock.

use chrono::NaiveDateTime;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use uuid::Uuid;

use super::phases::{self, ClaimTimes, Claimed, Existing, Lease};
use super::receipt::{self, Receipt};
use super::WalletError;
use crate::domain::{IdempotencyKey, RollbackRequest, TransactionKind};
use crate::store::idempotency_keys::{self, KeyRow};
use crate::store::outbox;
use crate::store::transactions::{self, TransactionRow};
use crate::store::{DbConnection, StoreError};

#[derive(Debug, Clone)]
pub struct RollbackCommand {
    pub key: IdempotencyKey,
    pub request: RollbackRequest,
    pub correlation_id: String,
}

/// The reason of a rollback recorded without an operator call: its debit was rejected, so
/// nothing had moved.
pub const ORIGINAL_REJECTED: &str = "ORIGINAL_REJECTED";
/// The reason of a tombstone: the hub never saw the debit, so nothing had moved.
pub const ORIGINAL_UNKNOWN: &str = "ORIGINAL_UNKNOWN";

/// Who asks for the rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// The game server: any debit it names is rolled back, completed ones refunded.
    Client,
    /// The completer, cancelling a debit abandoned past its resume window: only while the
    /// debit is still unsettled, never one that completed meanwhile.
    Hub,
}

/// The hub's own cancellation of an abandoned debit: a rollback like a client's, under a key
/// and refId made from the debit's id (so a second attempt is the same rollback).
pub fn cancellation_of(debit: &TransactionRow) -> RollbackCommand {
    let key = IdempotencyKey::for_hub_cancellation(&debit.id);
    RollbackCommand {
        request: RollbackRequest {
            player_id: debit.player_id.clone(),
            ref_id: key.as_str().to_owned(),
            original_ref_id: debit.ref_id.clone(),
            round_id: debit.round_id.clone(),
            meta: None,
        },
        key,
        correlation_id: debit
            .correlation_id
            .clone()
            .unwrap_or_else(|| format!("completer-{}", debit.id)),
    }
}

/// What a rollback of a debit in this state must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Charged, or perhaps charged: the operator refunds or cancels.
    CallOperator,
    /// The debit was rejected: nothing moved, so the rollback is only recorded.
    RecordOnly,
    /// The hub never saw the refId: recorded, and a later debit with it is refused.
    Tombstone,
}

/// Claims tried when a tombstone keeps colliding with a debit committing at that moment.
const CLAIM_TRIES: usize = 3;

/// Claims a rollback: answers from its key, or records it (and, for a debit that may have
/// moved money, hands it to the caller to call the operator with). For the [`Requester::Hub`]
/// [`Claimed::Refused`] also means the debit settled meanwhile: there is nothing to cancel.
pub fn claim(
    conn: &mut DbConnection,
    command: &RollbackCommand,
    requester: Requester,
    times: ClaimTimes,
    may_call_operator: bool,
) -> Result<Claimed, WalletError> {
    let fingerprint = command.request.fingerprint();
    let asked = Asked {
        command,
        fingerprint: &fingerprint,
        requester,
        times,
        may_call_operator,
    };
    for _ in 0..CLAIM_TRIES {
        match conn.write_transaction(|conn| claim_once(conn, &asked)) {
            Err(WalletError::Store(StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _,
            )))) => {
                if let Some(answer) = after_collision(conn, command, &fingerprint)? {
                    return answer;
                }
            }
            other => return other,
        }
    }
    // A debit and this tombstone kept colliding: the client's retry will find the debit.
    Err(WalletError::InProgress)
}

/// One rollback request and what it is decided against.
struct Asked<'a> {
    command: &'a RollbackCommand,
    fingerprint: &'a str,
    requester: Requester,
    times: ClaimTimes,
    may_call_operator: bool,
}

fn claim_once(conn: &mut DbConnection, asked: &Asked<'_>) -> Result<Claimed, WalletError> {
    let Asked {
        command,
        fingerprint,
        requester,
        times,
        may_call_operator,
    } = *asked;
    let lease = Lease {
        token: Uuid::new_v4().to_string(),
        until: times.lease_until,
    };
    let key = command.key.as_str();
    let existing = Existing {
        key,
        fingerprint,
        times,
    };
    if idempotency_keys::find(conn, key)?.is_some() {
        return existing.decide(conn, lease, may_call_operator);
    }
    let request = &command.request;
    let original = transactions::find_by_ref(conn, &request.original_ref_id)?;
    let plan = match &original {
        None => Plan::Tombstone,
        Some(debit) => plan_for(debit, request)?,
    };
    if let Some(first) = transactions::rollback_of(conn, &request.original_ref_id)? {
        // This key's own rollback, its key reaped since: the same request is answered again.
        if first.idempotency_key == key {
            if let Some(answer) = phases::answer_for_reaped_key(conn, key, fingerprint)? {
                return Ok(answer);
            }
        }
        return Err(WalletError::AlreadyRolledBack {
            rollback_transaction_id: first.id,
        });
    }
    if plan == Plan::CallOperator && !may_call_operator {
        return Ok(Claimed::Refused);
    }
    // The debit's key is overruled first, before anything is inserted: every path that
    // rolls a debit back locks its key before its rows, as the debit's own settlement does.
    if let (Plan::CallOperator, Some(debit)) = (plan, &original) {
        let overruled = overrule_debit(conn, debit, times.now)?;
        if requester == Requester::Hub && !overruled {
            return Ok(Claimed::Refused);
        }
    }
    if requester == Requester::Hub && plan != Plan::CallOperator {
        return Ok(Claimed::Refused);
    }
    let rollback = new_rollback(command, original.as_ref(), plan, times);
    let answer = (plan != Plan::CallOperator).then(|| receipt::rollback(&rollback, None));
    let key_row = key_row(
        key,
        fingerprint,
        &rollback,
        &lease,
        answer.as_ref(),
        times.now,
    );
    if !idempotency_keys::insert_if_absent(conn, &key_row)? {
        return existing.decide(conn, lease, may_call_operator);
    }
    // Unique violations (the refId, another rollback of the debit, the debit itself
    // appearing) undo the whole claim and are told apart by `after_collision`.
    transactions::insert(conn, &rollback)?;
    match (answer, original) {
        (Some(answer), _) => {
            outbox::insert(
                conn,
                &phases::outbox_row(&rollback, &command.correlation_id, times.now),
            )?;
            Ok(Claimed::Answered(answer))
        }
        (None, Some(debit)) => {
            transactions::leave_recovery_queue(conn, &debit.id)?;
            Ok(Claimed::Owned {
                transaction: Box::new(rollback),
                lease,
            })
        }
        (None, None) => Err(WalletError::Invariant(
            "a rollback that calls the operator names no debit".into(),
        )),
    }
}

/// What rolling `original` back takes, or why it cannot be.
fn plan_for(original: &TransactionRow, request: &RollbackRequest) -> Result<Plan, WalletError> {
    if original.kind != TransactionKind::Debit.as_str() {
        return Err(WalletError::NotRollbackable);
    }
    let other_round = matches!(
        (&request.round_id, &original.round_id),
        (Some(asked), Some(recorded)) if asked != recorded
    );
    if original.player_id != request.player_id || other_round {
        return Err(WalletError::RollbackMismatch);
    }
    Ok(match original.status.as_str() {
        transactions::REJECTED => Plan::RecordOnly,
        // Already rolled back: its rollback is found by the caller and named.
        _ => Plan::CallOperator,
    })
}

/// From here the debit is the rollback's to decide: its key, if still in progress, gets
/// its final answer now. False if the key had its answer already (the debit settled).
fn overrule_debit(
    conn: &mut DbConnection,
    debit: &TransactionRow,
    now: NaiveDateTime,
) -> Result<bool, WalletError> {
    let answer = receipt::cancelled_debit(debit);
    Ok(idempotency_keys::overrule(
        conn,
        &debit.idempotency_key,
        answer.status,
        &answer.body,
        now,
    )?)
}

fn new_rollback(
    command: &RollbackCommand,
    original: Option<&TransactionRow>,
    plan: Plan,
    times: ClaimTimes,
) -> TransactionRow {
    let request = &command.request;
    // A rollback that never reaches the operator says why, for reconciliation and the RGS.
    let (status, reason, next_recovery_at) = match plan {
        Plan::CallOperator => (transactions::PENDING, None, Some(times.recovery_due_at)),
        Plan::RecordOnly => (transactions::COMPLETED, Some(ORIGINAL_REJECTED), None),
        Plan::Tombstone => (transactions::COMPLETED, Some(ORIGINAL_UNKNOWN), None),
    };
    TransactionRow {
        id: Uuid::now_v7().to_string(),
        idempotency_key: command.key.as_str().to_owned(),
        ref_id: request.ref_id.clone(),
        player_id: request.player_id.clone(),
        kind: TransactionKind::Rollback.as_str().to_owned(),
        amount_cents: original.map_or(0, |debit| debit.amount_cents),
        currency: original.map_or_else(String::new, |debit| debit.currency.clone()),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        balance_cents: None,
        operator_reference: None,
        meta: request.meta.clone(),
        correlation_id: Some(command.correlation_id.clone()),
        created_at: times.now,
        updated_at: times.now,
        recovery_attempts: 0,
        next_recovery_at,
        review_since: None,
        // Only the round the request named: the row must rebuild the request's fingerprint
        // (its debit's round is one join away).
        round_id: request.round_id.clone(),
        round_closed: false,
        original_ref_id: Some(request.original_ref_id.clone()),
        original_transaction_id: original.map(|debit| debit.id.clone()),
    }
}

fn key_row(
    key: &str,
    fingerprint: &str,
    rollback: &TransactionRow,
    lease: &Lease,
    answer: Option<&Receipt>,
    now: NaiveDateTime,
) -> KeyRow {
    let (state, lease_token, locked_until) = match answer {
        Some(_) => (idempotency_keys::COMPLETED, None, None),
        None => (
            idempotency_keys::IN_PROGRESS,
            Some(lease.token.clone()),
            Some(lease.until),
        ),
    };
    KeyRow {
        idempotency_key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
        state: state.to_owned(),
        transaction_id: rollback.id.clone(),
        lease_token,
        locked_until,
        response_status: answer.map(|answer| i32::from(answer.status)),
        response_body: answer.map(|answer| answer.body.clone()),
        created_at: now,
        updated_at: now,
    }
}

/// After a claim collided on a unique index: the answer, or `None` to claim again (a debit
/// with the original refId committed meanwhile, so this is no tombstone after all).
fn after_collision(
    conn: &mut DbConnection,
    command: &RollbackCommand,
    fingerprint: &str,
) -> Result<Option<Result<Claimed, WalletError>>, WalletError> {
    if let Some(answer) = phases::answer_for_reaped_key(conn, command.key.as_str(), fingerprint)? {
        return Ok(Some(Ok(answer)));
    }
    let request = &command.request;
    if let Some(first) = transactions::rollback_of(conn, &request.original_ref_id)? {
        return Ok(Some(Err(WalletError::AlreadyRolledBack {
            rollback_transaction_id: first.id,
        })));
    }
    if transactions::find_by_ref(conn, &request.ref_id)?.is_some() {
        return Ok(Some(Err(WalletError::DuplicateRefId)));
    }
    Ok(None)
}
