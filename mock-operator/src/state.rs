//! The mock operator's books: accounts, transactions keyed by id, injected faults,
//! a sliding-window rate limiter and a log of every wallet call for tests to inspect.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Withdraw,
    Deposit,
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
    #[serde(skip)]
    pub http_status: u16,
    #[serde(skip)]
    pub response_body: String,
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
    /// How many times each transaction id actually moved money.
    pub charges: HashMap<String, u32>,
    pub calls: Vec<CallRecord>,
    fault: Option<(FaultKind, u32)>,
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
            calls: Vec::new(),
            fault: None,
            accepted: VecDeque::new(),
        }
    }

    pub fn inject_fault(&mut self, kind: FaultKind, count: u32) {
        self.fault = (count > 0).then_some((kind, count));
    }

    /// Takes one injected fault, if any remain.
    pub fn next_fault(&mut self) -> Option<FaultKind> {
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
