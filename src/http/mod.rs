//! The HTTP surface: routes stay thin; domain work happens in `wallet`.

mod admin;
mod bearer;
mod body;
pub mod correlation;
mod error;
mod health;
mod metrics;
mod openapi;
pub mod settings;
mod wallet;

use actix_web::http::Method;
use actix_web::{web, Route};

pub use error::ApiError;

use std::sync::Arc;

use crate::domain::Currency;
use crate::metrics::Metrics;
use crate::operator::CircuitBreaker;
use crate::signature::replay::ReplayGuard;
use crate::signature::Verifier;
use crate::store::Store;
use crate::supervisor::Supervisor;
use crate::wallet::WalletService;

/// What the handlers share.
pub struct AppState {
    pub wallet: WalletService,
    pub verifier: Verifier,
    pub replay_guard: ReplayGuard,
    pub currencies: Vec<Currency>,
    pub body_limit: usize,
    pub store: Store,
    pub admin_token: Option<String>,
    /// Bearer token `/metrics` asks for; `None`: open, as Prometheus scrapes by default.
    pub metrics_token: Option<String>,
    pub breaker: Arc<CircuitBreaker>,
    pub metrics: Arc<Metrics>,
    pub supervisor: Supervisor,
}

/// Who a route is for, which decides the listener that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// Game servers and integrators: the public port.
    Clients,
    /// Probes: every port.
    Probes,
    /// Prometheus: the metrics port when `METRICS_ADDR` is set.
    Scrapers,
    /// Operations staff: the metrics port when set, and only with an `ADMIN_TOKEN`.
    Admins,
}

/// A listener of the hub: the only one, or one of the two when `METRICS_ADDR` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Only,
    Public,
    Metrics,
}

impl Listener {
    fn serves(self, audience: Audience) -> bool {
        match (self, audience) {
            (Listener::Only, _) | (_, Audience::Probes) => true,
            (Listener::Public, audience) => audience == Audience::Clients,
            (Listener::Metrics, audience) => audience != Audience::Clients,
        }
    }
}

/// One route of the API. The table below registers the routes and is what the OpenAPI
/// document is checked against, so the two cannot drift apart unnoticed.
struct Endpoint {
    method: Method,
    path: &'static str,
    audience: Audience,
    handler: fn() -> Route,
}

/// More specific paths first: a resource matches by path before its methods are looked at.
fn endpoints() -> [Endpoint; 14] {
    let route = |audience| {
        move |method, path, handler| Endpoint {
            method,
            path,
            audience,
            handler,
        }
    };
    let (api, probe, scrape, admin) = (
        route(Audience::Clients),
        route(Audience::Probes),
        route(Audience::Scrapers),
        route(Audience::Admins),
    );
    [
        api(Method::POST, "/wallet/debit", || {
            web::post().to(wallet::debit)
        }),
        api(Method::POST, "/wallet/credit", || {
            web::post().to(wallet::credit)
        }),
        api(Method::POST, "/wallet/rollback", || {
            web::post().to(wallet::rollback)
        }),
        api(Method::POST, "/wallet/balance", || {
            web::post().to(wallet::balance)
        }),
        probe(Method::GET, "/health", || web::get().to(health::health)),
        probe(Method::GET, "/ready", || web::get().to(health::ready)),
        scrape(Method::GET, "/metrics", || web::get().to(metrics::render)),
        api(Method::GET, "/openapi.json", || {
            web::get().to(openapi::document)
        }),
        admin(Method::GET, "/admin/outbox", || web::get().to(admin::list)),
        admin(Method::POST, "/admin/outbox/replay-dead-letters", || {
            web::post().to(admin::replay_dead_letters)
        }),
        admin(Method::GET, "/admin/outbox/{event_id}", || {
            web::get().to(admin::show)
        }),
        admin(Method::POST, "/admin/outbox/{event_id}/replay", || {
            web::post().to(admin::replay)
        }),
        admin(Method::GET, "/admin/transactions/review", || {
            web::get().to(admin::under_review)
        }),
        api(Method::GET, "/", || web::get().to(openapi::index)),
    ]
}

/// The OpenAPI description `listener` serves at `/openapi.json`.
pub fn openapi_document(listener: Listener) -> &'static str {
    openapi::document_for(listener)
}

fn served(listener: Listener, with_admin: bool) -> impl Iterator<Item = Endpoint> {
    endpoints().into_iter().filter(move |e| {
        listener.serves(e.audience) && (with_admin || e.audience != Audience::Admins)
    })
}

/// (method, path) of every route `listener` serves; the admin API only with an `ADMIN_TOKEN`.
pub fn route_table(listener: Listener, with_admin: bool) -> Vec<(Method, &'static str)> {
    served(listener, with_admin)
        .map(|e| (e.method, e.path))
        .collect()
}

/// The routes of one listener; a known path with another method answers 405, anything
/// else 404.
pub fn routes(config: &mut web::ServiceConfig, listener: Listener, with_admin: bool) {
    let mut resources: Vec<(&str, actix_web::Resource)> = Vec::new();
    for endpoint in served(listener, with_admin) {
        let position = match resources
            .iter()
            .position(|(path, _)| *path == endpoint.path)
        {
            Some(position) => position,
            None => {
                let resource =
                    web::resource(endpoint.path).default_service(web::to(method_not_allowed));
                resources.push((endpoint.path, resource));
                resources.len() - 1
            }
        };
        let (path, resource) = resources.remove(position);
        resources.insert(position, (path, resource.route((endpoint.handler)())));
    }
    for (_, resource) in resources {
        config.service(resource);
    }
    config.default_service(web::to(not_found));
}

/// Malformed query strings get the API's own 400 with a code, not actix's plain text.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        let message = format!("the query string is invalid: {error}");
        ApiError::Request(crate::domain::request::RequestError::Invalid {
            field: "query",
            message,
        })
        .into()
    })
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
