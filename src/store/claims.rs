//! The claim of fresh Idempotency-Keys, grouped: many requests' PENDING transactions and
//! keys in one database transaction, with one multi-row statement per table on Postgres.
//!
//! A claim whose transaction collides with a row already there (its key was used before,
//! its refId is taken, a tombstone forbids it) is not an error: it comes back as
//! [`ClaimInsert::Taken`] and writes nothing, and the caller decides it the slow way, from
//! what is stored. Neighbours in the group are not affected. Two claims of one group that
//! collide with each other are told apart the same way: the first one is inserted, the
//! second is `Taken`.

use std::collections::HashSet;

use diesel::prelude::*;

use super::group_commit::GroupWrite;
use super::idempotency_keys::KeyRow;
use super::schema::{idempotency_keys, transactions};
use super::transactions::TransactionRow;
use super::{with_conn, DbConnection, StoreError};

/// A fresh key and the PENDING transaction it makes.
#[derive(Debug, Clone)]
pub struct NewClaim {
    pub key: KeyRow,
    pub transaction: TransactionRow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimInsert {
    /// Both rows are in: the caller holds the key's lease.
    Inserted,
    /// Something stored already stands in the way; nothing was written for this claim.
    Taken,
}

/// Inserts every claim that collides with nothing, in one database transaction.
pub fn insert_new(
    conn: &mut DbConnection,
    claims: &[NewClaim],
) -> Result<Vec<ClaimInsert>, StoreError> {
    conn.write_transaction(|conn| {
        let inserted = insert_transactions(conn, claims)?;
        let keys: Vec<&KeyRow> = claims
            .iter()
            .filter(|claim| inserted.contains(claim.transaction.id.as_str()))
            .map(|claim| &claim.key)
            .collect();
        let keyed = insert_keys(conn, &keys)?;
        // A key row never exists without the transaction it names, whose own
        // idempotency_key column is unique: a fresh transaction means a fresh key.
        if keyed != keys.len() {
            return Err(StoreError::Invariant(format!(
                "{} of {} fresh transactions found their key taken",
                keys.len() - keyed,
                keys.len()
            )));
        }
        let already_ours = already_inserted(conn, claims, &inserted)?;
        Ok(claims
            .iter()
            .map(|claim| {
                let id = claim.transaction.id.as_str();
                match inserted.contains(id) || already_ours.contains(id) {
                    true => ClaimInsert::Inserted,
                    false => ClaimInsert::Taken,
                }
            })
            .collect())
    })
}

/// Of the claims that collided, those that collided with themselves: written by an earlier
/// try of this very group whose commit was reported failed although it happened (their
/// transaction id is theirs alone, and their key went in with it).
fn already_inserted(
    conn: &mut DbConnection,
    claims: &[NewClaim],
    inserted: &HashSet<String>,
) -> Result<HashSet<String>, StoreError> {
    let collided: Vec<&str> = claims
        .iter()
        .map(|claim| claim.transaction.id.as_str())
        .filter(|id| !inserted.contains(*id))
        .collect();
    if collided.is_empty() {
        return Ok(HashSet::new());
    }
    let found = transactions::table
        .filter(transactions::id.eq_any(collided))
        .select(transactions::id);
    Ok(with_conn!(conn, |c| found.load::<String>(c))?
        .into_iter()
        .collect())
}

/// The ids of the transactions that went in. Postgres: one statement, `ON CONFLICT DO
/// NOTHING RETURNING` (every unique index is an arbiter, the partial ones included).
/// SQLite runs in process, where a statement costs no round trip, and diesel cannot send
/// it a multi-row insert with `NULL`s: one statement per row.
fn insert_transactions(
    conn: &mut DbConnection,
    claims: &[NewClaim],
) -> Result<HashSet<String>, StoreError> {
    let rows: Vec<&TransactionRow> = claims.iter().map(|claim| &claim.transaction).collect();
    match conn {
        DbConnection::Postgres(c) => Ok(diesel::insert_into(transactions::table)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(transactions::id)
            .get_results::<String>(c)?
            .into_iter()
            .collect()),
        DbConnection::Sqlite(c) => {
            let mut inserted = HashSet::new();
            for row in rows {
                let added = diesel::insert_into(transactions::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(c)?;
                if added == 1 {
                    inserted.insert(row.id.clone());
                }
            }
            Ok(inserted)
        }
    }
}

/// How many of `keys` went in (all of them unless an invariant is broken).
fn insert_keys(conn: &mut DbConnection, keys: &[&KeyRow]) -> Result<usize, StoreError> {
    if keys.is_empty() {
        return Ok(0);
    }
    match conn {
        DbConnection::Postgres(c) => Ok(diesel::insert_into(idempotency_keys::table)
            .values(keys.to_vec())
            .on_conflict_do_nothing()
            .execute(c)?),
        DbConnection::Sqlite(c) => {
            let mut added = 0;
            for key in keys {
                added += diesel::insert_into(idempotency_keys::table)
                    .values(*key)
                    .on_conflict_do_nothing()
                    .execute(c)?;
            }
            Ok(added)
        }
    }
}

/// [`insert_new`] as a group write.
pub struct ClaimWrite;

impl GroupWrite for ClaimWrite {
    type Item = NewClaim;
    type Output = ClaimInsert;

    fn write_group(
        &self,
        conn: &mut DbConnection,
        items: &[NewClaim],
    ) -> Result<Vec<ClaimInsert>, StoreError> {
        insert_new(conn, items)
    }

    fn name(&self) -> &'static str {
        "claim"
    }

    /// A claim whose request is gone would only leave a leased key and a PENDING
    /// transaction nobody sends to the operator (and, for a debit, a cancellation later).
    fn skips_abandoned(&self) -> bool {
        true
    }
}
