//! The mock operator's books: accounts, transactions keyed by id, refunds and cancelled ids,
//! injected faults, a sliding-window rate limiter and a log of every wallet call for tests
//! to inspect.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Withdraw,
    Deposit,
    /// Cancels a withdraw; see [`RollbackDetails`].
    Rollback,
}

/// What a rollback did to the withdraw it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackDetails {
    pub original_transaction_id: String,
    /// Whether this rollback gave money back; false when the original was never charged,
    /// unknown, or already refunded by another rollback.
    pub refunded: bool,
    /// What was actually credited back, which is the original's amount and never the
    /// rollback's own `amount`; 0 when nothing was refunded.
    pub refunded_minor: i64,
}

/// What the operator concluded about one transaction id; replayed verbatim on retries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRecord {
    pub transaction_id: String,
    pub player_id: String,
    pub operation: Operation,
    pub amount_minor: i64,
    pub currency: String,
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    /// Only rollbacks carry these.
    #[serde(flatten)]
    pub rollback: Option<RollbackDetails>,
    #[serde(skip)]
    pub http_status: u16,
    #[serde(skip)]
    pub response_body: String,
}

/// Ways the operator's books can drift from the hub's, for reconciliation tests.
#[derive(Debug, Clone)]
pub enum Drift {
    /// The operator loses its record of a transaction.
    Drop { transaction_id: String },
    /// The recorded amount changes by `delta_minor`.
    Amount {
        transaction_id: String,
        delta_minor: i64,
    },
    Status {
        transaction_id: String,
        status: &'static str,
    },
    Currency {
        transaction_id: String,
        currency: String,
    },
    /// A withdrawal becomes a deposit or the other way round.
    Type { transaction_id: String },
    Player {
        transaction_id: String,
        player_id: String,
    },
    /// A transaction the hub never sent.
    Extra { record: TransactionRecord },
    /// The operator refunds a charged withdraw on its own, recording the rollback
    /// `transaction_id`: it now holds as cancelled what the hub may still hold as completed.
    Refund {
        transaction_id: String,
        original_transaction_id: String,
    },
}

impl TransactionRecord {
    /// A record as the operator would hold it after processing the call, answer included.
    pub fn settled(
        transaction_id: &str,
        player_id: &str,
        operation: Operation,
        amount_minor: i64,
        currency: &str,
        status: &'static str,
        created_at: DateTime<Utc>,
    ) -> Self {
        let body = serde_json::json!({"status": status, "transactionId": transaction_id, "currency": currency});
        Self {
            transaction_id: transaction_id.to_owned(),
            player_id: player_id.to_owned(),
            operation,
            amount_minor,
            currency: currency.to_owned(),
            status,
            created_at,
            rollback: None,
            http_status: if status == "SUCCESS" { 200 } else { 422 },
            response_body: body.to_string(),
        }
    }
}

/// Random misbehaviour: each call independently fails with these odds (per thousand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    pub server_error_per_mille: u32,
    pub rate_limited_per_mille: u32,
    /// The call is applied, then answered after `late_by`.
    pub late_per_mille: u32,
    pub late_by: Duration,
    pub retry_after_seconds: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    ServerError,
    RateLimited {
        retry_after_seconds: u64,
    },
    /// Apply the operation, then answer only after `delay`: the caller sees a timeout
    /// although the money moved.
    Timeout {
        delay: Duration,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// Milliseconds since the Unix epoch when the call arrived.
    pub received_at_ms: u128,
    pub path: String,
    pub transaction_id: Option<String>,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub currency: String,
    pub balance_minor: i64,
}

#[derive(Debug)]
pub struct Books {
    pub accounts: HashMap<String, Account>,
    /// Ordered by transaction id so that listings page stably.
    pub transactions: BTreeMap<String, TransactionRecord>,
    /// How many times each withdraw or deposit id actually moved money.
    pub charges: HashMap<String, u32>,
    /// How many times money was given back for each withdraw id (by any rollback).
    pub refunds: HashMap<String, u32>,
    /// Ids a rollback named before they were ever charged: a withdraw arriving with one of
    /// them later is refused, so a bet the game gave up on is never charged late.
    pub cancelled: HashSet<String>,
    pub calls: Vec<CallRecord>,
    fault: Option<(FaultKind, u32)>,
    flapping: Option<(Flapping, u64)>,
    accepted: VecDeque<Instant>,
}

pub const DEFAULT_PLAYERS: [(&str, &str, i64); 5] = [
    ("player-001", "USD", 10_000),
    ("player-002", "EUR", 5_000),
    ("player-003", "GBP", 15_000),
    ("player-004", "USD", 100),
    ("player-005", "USD", 25_000),
];

impl Books {
    pub fn new() -> Self {
        let accounts = DEFAULT_PLAYERS
            .iter()
            .map(|(id, currency, balance)| {
                let account = Account {
                    currency: (*currency).to_owned(),
                    balance_minor: *balance,
                };
                ((*id).to_owned(), account)
            })
            .collect();
        Self {
            accounts,
            transactions: BTreeMap::new(),
            charges: HashMap::new(),
            refunds: HashMap::new(),
            cancelled: HashSet::new(),
            calls: Vec::new(),
            fault: None,
            flapping: None,
            accepted: VecDeque::new(),
        }
    }

    pub fn inject_fault(&mut self, kind: FaultKind, count: u32) {
        self.fault = (count > 0).then_some((kind, count));
    }

    pub fn flap(&mut self, flapping: Option<Flapping>) {
        self.flapping = flapping.map(|f| (f, f.seed.max(1)));
    }

    /// A fault drawn by the flapping odds (xorshift, so a seed replays the same run).
    fn roll_flapping(&mut self) -> Option<FaultKind> {
        let (odds, state) = self.flapping.as_mut()?;
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let roll = (*state % 1000) as u32;
        let (error, limited, late) = (
            odds.server_error_per_mille,
            odds.rate_limited_per_mille,
            odds.late_per_mille,
        );
        if roll < error {
            Some(FaultKind::ServerError)
        } else if roll < error + limited {
            Some(FaultKind::RateLimited {
                retry_after_seconds: odds.retry_after_seconds,
            })
        } else if roll < error + limited + late {
            Some(FaultKind::Timeout {
                delay: odds.late_by,
            })
        } else {
            None
        }
    }

    /// Takes one injected fault, if any remain, else rolls the flapping odds.
    pub fn next_fault(&mut self) -> Option<FaultKind> {
        if self.fault.is_none() {
            return self.roll_flapping();
        }
        let (kind, remaining) = self.fault.as_mut()?;
        let kind = *kind;
        *remaining -= 1;
        if *remaining == 0 {
            self.fault = None;
        }
        Some(kind)
    }

    /// Sliding one-minute window. `Err(wait)` when the call must be refused.
    pub fn admit(&mut self, per_minute: u32, now: Instant) -> Result<(), Duration> {
        if per_minute == 0 {
            return Ok(());
        }
        let window = Duration::from_secs(60);
        while let Some(oldest) = self.accepted.front() {
            if now.duration_since(*oldest) >= window {
                self.accepted.pop_front();
            } else {
                break;
            }
        }
        if self.accepted.len() >= per_minute as usize {
            let oldest = *self.accepted.front().expect("window is full, so not empty");
            return Err(window - now.duration_since(oldest));
        }
        self.accepted.push_back(now);
        Ok(())
    }

    pub fn record_call(&mut self, path: &str, transaction_id: Option<String>, status: u16) {
        let received_at_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        self.calls.push(CallRecord {
            received_at_ms,
            path: path.to_owned(),
            transaction_id,
            status,
        });
    }

    /// Applies `drift` to the books; false if it names an unknown transaction (for a refund:
    /// unless the original is a charged, unrefunded withdraw and the new id is unused).
    pub fn drift(&mut self, drift: Drift) -> bool {
        fn record<'a>(books: &'a mut Books, id: &str) -> Option<&'a mut TransactionRecord> {
            books.transactions.get_mut(id)
        }
        match drift {
            Drift::Drop { transaction_id } => self.transactions.remove(&transaction_id).is_some(),
            Drift::Extra { record } => {
                self.transactions
                    .insert(record.transaction_id.clone(), record);
                true
            }
            Drift::Amount {
                transaction_id,
                delta_minor,
            } => record(self, &transaction_id)
                .map(|r| r.amount_minor += delta_minor)
                .is_some(),
            Drift::Status {
                transaction_id,
                status,
            } => record(self, &transaction_id)
                .map(|r| r.status = status)
                .is_some(),
            Drift::Currency {
                transaction_id,
                currency,
            } => record(self, &transaction_id)
                .map(|r| r.currency = currency)
                .is_some(),
            Drift::Player {
                transaction_id,
                player_id,
            } => record(self, &transaction_id)
                .map(|r| r.player_id = player_id)
                .is_some(),
            Drift::Type { transaction_id } => record(self, &transaction_id)
                .map(|r| {
                    r.operation = match r.operation {
                        Operation::Withdraw => Operation::Deposit,
                        Operation::Deposit => Operation::Withdraw,
                        // A refund reported as a plain credit is the plausible confusion.
                        Operation::Rollback => Operation::Deposit,
                    }
                })
                .is_some(),
            Drift::Refund {
                transaction_id,
                original_transaction_id,
            } => {
                crate::rollback::refund_unprompted(self, &transaction_id, &original_transaction_id)
            }
        }
    }

    pub fn total_charges(&self) -> u32 {
        self.charges.values().sum()
    }
}

impl Default for Books {
    fn default() -> Self {
        Self::new()
    }
}

/// Shared by the HTTP handlers and by tests holding a [`crate::MockOperator`].
#[derive(Debug, Default)]
pub struct SharedBooks(pub Mutex<Books>);

impl SharedBooks {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        // A poisoned lock only means a handler panicked mid-update; the mock keeps serving.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
