//! The HTTP surface: routes stay thin; domain work happens in `wallet`.

mod admin;
mod body;
pub mod correlation;
mod error;
mod health;
mod metrics;
mod wallet;

use actix_web::web;

pub use error::ApiError;

use std::sync::Arc;

use crate::domain::Currency;
use crate::metrics::Metrics;
use crate::operator::CircuitBreaker;
use crate::signature::Verifier;
use crate::store::Store;
use crate::wallet::WalletService;

/// What the handlers share.
pub struct AppState {
    pub wallet: WalletService,
    pub verifier: Verifier,
    pub currencies: Vec<Currency>,
    pub body_limit: usize,
    pub store: Store,
    pub admin_token: Option<String>,
    pub breaker: Arc<CircuitBreaker>,
    pub metrics: Arc<Metrics>,
}

/// The API's routes; the admin API only when an `ADMIN_TOKEN` is configured.
pub fn routes(config: &mut web::ServiceConfig, with_admin: bool) {
    if with_admin {
        config.configure(admin::routes);
    }
    config
        .service(
            web::resource("/wallet/debit")
                .post(wallet::debit)
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/wallet/credit")
                .post(wallet::credit)
                .default_service(web::to(method_not_allowed)),
        )
        .route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(metrics::render))
        .default_service(web::to(not_found));
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
