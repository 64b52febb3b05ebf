//! Wiring: configuration in, a running API out. Used by `main` and by the tests.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};

use crate::config::Config;
use crate::http::{self, AppState};
use crate::operator::OperatorClient;
use crate::signature::Verifier;
use crate::store::{Store, StoreError};
use crate::wallet::WalletService;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the operator client: {0}")]
    OperatorClient(#[from] reqwest::Error),
}

/// The API, bound and ready to run.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    store: Store,
}

impl Application {
    /// Migrates the database, opens the pool and binds `config.listen_addr` (port 0 picks one).
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let database = config.database.clone();
        let store = tokio::task::spawn_blocking(move || Store::connect(&database))
            .await
            .map_err(|_| StoreError::TaskFailed)??;
        let listener =
            TcpListener::bind(config.listen_addr).map_err(|source| StartupError::Listen {
                addr: config.listen_addr,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartupError::Listen {
                addr: config.listen_addr,
                source,
            })?;
        let operator = OperatorClient::new(&config.operator)?;
        let state = web::Data::new(AppState {
            wallet: WalletService::new(store.clone(), operator, config.operator.retry.deadline),
            verifier: Verifier::new(config.hmac_secrets.clone(), config.signature_tolerance),
            currencies: config.supported_currencies.clone(),
            body_limit: config.body_limit_bytes,
            store: store.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(http::correlation::middleware))
                .app_data(state.clone())
                .configure(http::routes)
        })
        .workers(config.workers)
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Listen { addr, source })?
        .run();
        Ok(Self {
            addr,
            server,
            store,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until [`ServerHandle::stop`] is called.
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}
