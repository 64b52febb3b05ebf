//! Wiring: configuration in, a running hub out (API, outbox drainer, Postgres listener,
//! retention), all stopped by one cancellation token. Used by `main` and by the tests.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{self, AppState, Listener};
use crate::metrics::Metrics;
use crate::operator::{CircuitBreaker, Governor, OperatorClient};
use crate::outbox::{listener, retention, Drainer};
use crate::signature::replay::ReplayGuard;
use crate::signature::Verifier;
use crate::store::postgres_tls::{ListenTarget, PostgresTlsError};
use crate::store::{DatabaseUrl, Store, StoreError};
use crate::supervisor::{RestartBackoff, Supervisor};
use crate::wallet::{WalletParts, WalletService};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build an HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error(transparent)]
    PostgresTls(#[from] PostgresTlsError),
    #[error("{0}")]
    PeerCertificate(String),
    #[error("REDIS_URL is not usable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("REDIS_URL {url}: the TLS handshake failed (check REDIS_CA_FILE, REDIS_CLIENT_CERT and REDIS_CLIENT_KEY): {source}")]
    RedisTls {
        /// Without its password.
        url: String,
        source: redis::RedisError,
    },
}

/// The hub, bound and ready to run.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    /// Set with `METRICS_ADDR`: the listener of `/metrics` and the admin API.
    metrics: Option<(SocketAddr, Server)>,
    store: Store,
    drainer: Drainer,
    outbox_wake: Arc<Notify>,
    /// Set on Postgres: where and how the outbox listener connects.
    listen_target: Option<ListenTarget>,
    retention: Duration,
    drain: bool,
    wallet: WalletService,
    supervisor: Supervisor,
}

impl Application {
    /// Migrates the database, opens the pool and binds `config.listen_addr` (port 0 picks one).
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        // The listener's TLS files are read before anything connects, so that a bad
        // sslrootcert is reported as such rather than as a failed connection.
        let listen_target = match &config.database.url {
            DatabaseUrl::Postgres(url) => Some(ListenTarget::from_url(url)?),
            DatabaseUrl::Sqlite(_) => None,
        };
        let database = config.database.clone();
        let store = tokio::task::spawn_blocking(move || Store::connect(&database))
            .await
            .map_err(|_| StoreError::TaskFailed)??;
        let outbox_wake = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::new());
        let supervisor = Supervisor::new(RestartBackoff::DEFAULT, metrics.clone());
        let governor = Governor::new(
            config.operator.requests_per_minute,
            config.operator.redis_url.as_deref(),
            &config.operator.redis_tls,
            &config.operator.redis_key_prefix,
            metrics.clone(),
        )?;
        governor
            .check_tls()
            .await
            .map_err(|source| StartupError::RedisTls {
                url: config
                    .operator
                    .redis_url
                    .as_deref()
                    .map(crate::settings::redact_url)
                    .unwrap_or_default(),
                source,
            })?;
        let operator = OperatorClient::new(&config.operator, metrics.clone(), governor.clone())?;
        operator
            .check_certificate()
            .await
            .map_err(StartupError::PeerCertificate)?;
        let drainer = Drainer::new(
            store.clone(),
            &config.webhooks,
            outbox_wake.clone(),
            metrics.clone(),
        )?;
        if config.webhooks.drain {
            drainer
                .check_certificate()
                .await
                .map_err(StartupError::PeerCertificate)?;
        }
        let breaker = CircuitBreaker::new(config.operator.breaker.clone());
        let wallet_parts = WalletParts {
            breaker: breaker.clone(),
            governor,
            operator_deadline: config.operator.retry.deadline,
            recovery: config.recovery.clone(),
            outbox_wake: outbox_wake.clone(),
            metrics: metrics.clone(),
        };
        let wallet = WalletService::new(store.clone(), operator, wallet_parts);
        let state = web::Data::new(AppState {
            wallet: wallet.clone(),
            breaker,
            metrics: metrics.clone(),
            verifier: Verifier::new(config.hmac_secrets.clone(), config.signature_tolerance)
                .accepting_v1(config.signatures.accept_v1),
            replay_guard: ReplayGuard::new(
                config.operator.redis_url.as_deref(),
                &config.operator.redis_tls,
                &config.operator.redis_key_prefix,
                metrics.clone(),
            )?,
            currencies: config.supported_currencies.clone(),
            body_limit: config.body_limit_bytes,
            store: store.clone(),
            admin_token: config.admin_token.clone(),
            metrics_token: config.metrics_token.clone(),
            supervisor: supervisor.clone(),
        });
        let (public, metrics_server) = match config.metrics_addr {
            None => (Listener::Only, None),
            Some(metrics_addr) => (
                Listener::Public,
                // One worker: scrapes and admin calls are few, and must not take the API's.
                Some(serve(&state, metrics_addr, Listener::Metrics, 1)?),
            ),
        };
        let (addr, server) = serve(&state, config.listen_addr, public, config.workers)?;
        Ok(Self {
            addr,
            server,
            metrics: metrics_server,
            drainer,
            store,
            outbox_wake,
            listen_target,
            retention: config.webhooks.retention,
            drain: config.webhooks.drain,
            wallet,
            supervisor,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served: `METRICS_ADDR`'s listener, or the API's.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.as_ref().map_or(self.addr, |(addr, _)| *addr)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle on this hub's drainer, e.g. to drain deterministically in a test.
    pub fn drainer(&self) -> Drainer {
        self.drainer.clone()
    }

    /// The supervisor of this hub's background loops (`/ready` reports the failing ones).
    pub fn supervisor(&self) -> Supervisor {
        self.supervisor.clone()
    }

    /// Runs until `cancel` fires, then stops taking requests and claiming webhooks, lets
    /// in-flight requests and deliveries finish (every claimed webhook is in flight: the
    /// drainer claims no more than it can start), and returns.
    pub async fn run_until_cancelled(self, cancel: CancellationToken) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let metrics_server = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let supervisor = self.supervisor;
        let (wallet, stop) = (self.wallet.clone(), cancel.clone());
        let mut background = vec![
            supervisor.spawn("completer", cancel.clone(), move |health| {
                wallet.clone().recover_until_cancelled(stop.clone(), health)
            }),
        ];
        let (wallet, stop) = (self.wallet, cancel.clone());
        background.push(
            supervisor.spawn("key_reaper", cancel.clone(), move |health| {
                wallet.clone().reap_until_cancelled(stop.clone(), health)
            }),
        );
        if self.drain {
            let (drainer, stop) = (self.drainer, cancel.clone());
            background.push(supervisor.spawn("drainer", cancel.clone(), move |health| {
                drainer.clone().run_until_cancelled(stop.clone(), health)
            }));
            let (store, retention, stop) = (self.store, self.retention, cancel.clone());
            background.push(
                supervisor.spawn("retention", cancel.clone(), move |health| {
                    retention::prune_until_cancelled(store.clone(), retention, stop.clone(), health)
                }),
            );
            if let Some(target) = self.listen_target {
                let (wake, stop) = (self.outbox_wake, cancel.clone());
                background.push(supervisor.spawn("listener", cancel.clone(), move |health| {
                    listener::listen_until_cancelled(
                        target.clone(),
                        wake.clone(),
                        stop.clone(),
                        health,
                    )
                }));
            }
        }
        cancel.cancelled().await;
        handle.stop(true).await;
        if let Some((handle, server)) = metrics_server {
            handle.stop(true).await;
            let _ = server.await;
        }
        for task in background {
            let _ = task.await;
        }
        server.await.map_err(std::io::Error::other)?
    }
}

/// Binds `addr` (port 0 picks one) and serves `listener`'s routes there.
fn serve(
    state: &web::Data<AppState>,
    addr: SocketAddr,
    listener: Listener,
    workers: usize,
) -> Result<(SocketAddr, Server), StartupError> {
    let listen_error = |source| StartupError::Listen { addr, source };
    let socket = TcpListener::bind(addr).map_err(listen_error)?;
    let bound = socket.local_addr().map_err(listen_error)?;
    let state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::from_fn(http::correlation::middleware))
            .app_data(state.clone())
            .app_data(web::Data::new(listener))
            .app_data(http::query_config())
            .configure(|routes| http::routes(routes, listener, state.admin_token.is_some()))
    })
    .workers(workers)
    .disable_signals()
    .listen(socket)
    .map_err(|source| StartupError::Listen {
        addr: bound,
        source,
    })?
    .run();
    Ok((bound, server))
}
