//! A mock of the operator's wallet API (DESIGN §4, §6, §8), usable as a binary or in-process
//! from tests, which can read its books directly: balances, per-transaction charge and refund
//! counts, cancelled ids, and the time of every call.
//!
//! Routes:
//! - `POST /v2/players/{id}/withdraw`, `/deposit`: `{"amount","currency","transactionId",
//!   "description"?}`, idempotent on `transactionId`. A withdraw whose id a rollback
//!   cancelled answers 409 `{"status":"CANCELLED"}` and moves nothing.
//! - `POST /v2/players/{id}/rollback`: `{"transactionId","originalTransactionId","amount",
//!   "currency","description"?}`, idempotent on its own `transactionId`; refunds a charged
//!   withdraw once (`"refunded":true`), otherwise answers `"refunded":false` and, if the
//!   withdraw was never charged, cancels its id. 422 for a deposit or another player's withdraw.
//! - `GET /v2/players/{id}/balance`, `GET /v2/transactions` (rollbacks listed as `ROLLBACK`
//!   with `originalTransactionId`, `refunded`, `refundedAmount`), `GET /health`.
//! - Faults for every money-moving route: `POST /v2/players/simulate/error`, the rate limit,
//!   and [`MockOperator::flap`].
//! - Test hooks: `GET /_mock/charges`, `GET /_mock/calls`, `POST /_mock/drift` (kinds `drop`,
//!   `amount`, `status`, `currency`, `type`, `player`, `extra`, `refund`).

mod http;
pub mod money;
mod rollback;
mod state;
mod wallet;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

pub use state::{
    Books, CallRecord, Drift, FaultKind, Flapping, Operation, RollbackDetails, SharedBooks,
    TransactionRecord,
};

#[derive(Debug, Clone)]
pub struct MockOperatorConfig {
    /// Wallet calls accepted per sliding minute; 0 turns the limit off.
    pub requests_per_minute: u32,
    pub workers: usize,
}

impl Default for MockOperatorConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 60,
            workers: 2,
        }
    }
}

/// A running mock operator; dropping it stops the server.
pub struct MockOperator {
    addr: SocketAddr,
    books: Arc<SharedBooks>,
    handle: ServerHandle,
}

impl MockOperator {
    /// Serves on `listener` (bind port 0 for an ephemeral port) until stopped.
    pub fn start(listener: TcpListener, config: MockOperatorConfig) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let books = Arc::new(SharedBooks::default());
        let app_books = web::Data::from(books.clone());
        let limits = web::Data::new(config.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_books.clone())
                .app_data(limits.clone())
                .configure(http::routes)
        })
        .workers(config.workers)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            addr,
            books,
            handle,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Times the operator moved money for this withdraw or deposit id (0 or 1 when callers
    /// behave); refunds are counted apart, by [`Self::refunds_for`].
    pub fn charges_for(&self, transaction_id: &str) -> u32 {
        let books = self.books.lock();
        books.charges.get(transaction_id).copied().unwrap_or(0)
    }

    /// Times money was given back for this withdraw id, by any rollback (0 or 1, or the
    /// operator refunded twice).
    pub fn refunds_for(&self, original_transaction_id: &str) -> u32 {
        let books = self.books.lock();
        books
            .refunds
            .get(original_transaction_id)
            .copied()
            .unwrap_or(0)
    }

    /// Whether a rollback cancelled this id before it was ever charged, so that a withdraw
    /// with it is refused.
    pub fn is_cancelled(&self, transaction_id: &str) -> bool {
        self.books.lock().cancelled.contains(transaction_id)
    }

    pub fn total_charges(&self) -> u32 {
        self.books.lock().total_charges()
    }

    pub fn balance(&self, player_id: &str) -> Option<i64> {
        let books = self.books.lock();
        books
            .accounts
            .get(player_id)
            .map(|account| account.balance_minor)
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        self.books.lock().calls.clone()
    }

    /// Makes the operator's books disagree with the hub's; false if the id is unknown.
    pub fn drift(&self, drift: Drift) -> bool {
        self.books.lock().drift(drift)
    }

    /// Records transactions as if the operator had processed them, e.g. to reconcile a
    /// large day without calling the API a million times.
    pub fn seed(&self, records: impl IntoIterator<Item = TransactionRecord>) {
        let mut books = self.books.lock();
        for record in records {
            books
                .transactions
                .insert(record.transaction_id.clone(), record);
        }
    }

    /// Makes every following call fail at random with the given odds; `None` stops it.
    pub fn flap(&self, flapping: Option<Flapping>) {
        self.books.lock().flap(flapping);
    }

    pub fn inject_fault(&self, kind: FaultKind, count: u32) {
        self.books.lock().inject_fault(kind, count);
    }

    /// Stops the server once in-flight calls have been answered.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

impl Drop for MockOperator {
    fn drop(&mut self) {
        // The stop command is sent at once; awaiting its completion is optional.
        drop(self.handle.stop(false));
    }
}
