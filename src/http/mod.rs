//! The HTTP surface: routes stay thin; domain work happens in `wallet`.

mod body;
pub mod correlation;
mod error;
mod health;
mod wallet;

use actix_web::web;

pub use error::ApiError;

use crate::domain::Currency;
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
}

pub fn routes(config: &mut web::ServiceConfig) {
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
        .default_service(web::to(not_found));
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
