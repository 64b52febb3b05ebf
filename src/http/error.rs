//! Every error the API can answer with, mapped to status and JSON body in one place.
//! Bodies carry a machine-readable `code` and a human `message`, never internals.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::request::{IdempotencyKeyError, RequestError};
use crate::signature::SignatureError;
use crate::store::StoreError;
use crate::wallet::WalletError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    IdempotencyKey(#[from] IdempotencyKeyError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    #[error("no webhook event with that id")]
    EventNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no such route")]
    NotFound,
    #[error("this route does not accept that method")]
    MethodNotAllowed,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// The transaction the error is about, when naming it helps (the first rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<&'a str>,
}

impl ApiError {
    fn store_error(&self) -> Option<&StoreError> {
        match self {
            ApiError::Wallet(WalletError::Store(error)) | ApiError::Store(error) => Some(error),
            _ => None,
        }
    }

    fn store_unavailable(&self) -> bool {
        matches!(self.store_error(), Some(StoreError::Unavailable(_)))
    }

    /// A fault of the hub itself, as opposed to a client mistake or an outage elsewhere.
    fn is_internal(&self) -> bool {
        matches!(self, ApiError::Wallet(WalletError::Invariant(_)))
            || (self.store_error().is_some() && !self.store_unavailable())
    }

    fn code(&self) -> &'static str {
        if self.store_unavailable() {
            return "SERVICE_UNAVAILABLE";
        }
        if self.is_internal() {
            return "INTERNAL_ERROR";
        }
        match self {
            ApiError::Signature(SignatureError::Stale) => "STALE_TIMESTAMP",
            ApiError::Signature(SignatureError::UnsupportedVersion) => {
                "UNSUPPORTED_SIGNATURE_VERSION"
            }
            ApiError::Signature(SignatureError::V2Required) => "SIGNATURE_V2_REQUIRED",
            ApiError::Signature(SignatureError::Replayed) => "SIGNATURE_REPLAYED",
            ApiError::Signature(_) => "INVALID_SIGNATURE",
            ApiError::IdempotencyKey(IdempotencyKeyError::Missing) => "MISSING_IDEMPOTENCY_KEY",
            ApiError::IdempotencyKey(
                IdempotencyKeyError::Invalid | IdempotencyKeyError::Reserved,
            ) => "INVALID_IDEMPOTENCY_KEY",
            ApiError::Request(RequestError::Invalid { .. }) | ApiError::BodyUnreadable => {
                "INVALID_REQUEST"
            }
            ApiError::Request(RequestError::UnsupportedCurrency { .. }) => "UNSUPPORTED_CURRENCY",
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::Wallet(WalletError::KeyReused) => "IDEMPOTENCY_KEY_REUSED",
            ApiError::Wallet(WalletError::InProgress) => "REQUEST_IN_PROGRESS",
            ApiError::Wallet(WalletError::ResumeWindowPassed) => "RESUME_WINDOW_PASSED",
            ApiError::Wallet(WalletError::DuplicateRefId) => "DUPLICATE_REF_ID",
            ApiError::Wallet(WalletError::TransactionRolledBack) => "TRANSACTION_ROLLED_BACK",
            ApiError::Wallet(WalletError::AlreadyRolledBack { .. }) => "ALREADY_ROLLED_BACK",
            ApiError::Wallet(WalletError::NotRollbackable) => "NOT_ROLLBACKABLE",
            ApiError::Wallet(WalletError::RollbackMismatch) => "ROLLBACK_MISMATCH",
            ApiError::Wallet(WalletError::PlayerNotFound) => "PLAYER_NOT_FOUND",
            ApiError::Wallet(WalletError::CurrencyMismatch) => "CURRENCY_MISMATCH",
            ApiError::Wallet(
                WalletError::OperatorUnavailable { .. } | WalletError::CircuitOpen { .. },
            ) => "OPERATOR_UNAVAILABLE",
            ApiError::Wallet(WalletError::RateLimited { .. }) => "OPERATOR_RATE_LIMITED",
            ApiError::Unauthorized => "UNAUTHORIZED",
            ApiError::EventNotFound => "EVENT_NOT_FOUND",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ApiError::Wallet(WalletError::Store(_) | WalletError::Invariant(_))
            | ApiError::Store(_) => "INTERNAL_ERROR",
        }
    }

    fn message(&self) -> String {
        if self.store_unavailable() {
            return "the hub's database is unavailable; retry later (with the same Idempotency-Key)".into();
        }
        if self.is_internal() {
            // Internals stay in the log, found by the correlation id on the response.
            return "internal error; quote the X-Correlation-ID when reporting it".into();
        }
        self.to_string()
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            ApiError::Request(RequestError::Invalid { field, .. }) => Some(field),
            ApiError::Request(RequestError::UnsupportedCurrency { .. }) => Some("currency"),
            ApiError::IdempotencyKey(_) => Some("Idempotency-Key"),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        if self.store_unavailable() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        if self.is_internal() {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        match self {
            ApiError::Signature(_) | ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::IdempotencyKey(_) | ApiError::BodyUnreadable => StatusCode::BAD_REQUEST,
            ApiError::Request(RequestError::Invalid { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Request(RequestError::UnsupportedCurrency { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Wallet(WalletError::KeyReused) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Wallet(
                WalletError::InProgress
                | WalletError::DuplicateRefId
                | WalletError::ResumeWindowPassed
                | WalletError::TransactionRolledBack
                | WalletError::AlreadyRolledBack { .. },
            ) => StatusCode::CONFLICT,
            ApiError::Wallet(
                WalletError::NotRollbackable
                | WalletError::RollbackMismatch
                | WalletError::CurrencyMismatch,
            ) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Wallet(WalletError::PlayerNotFound) => StatusCode::NOT_FOUND,
            ApiError::Wallet(WalletError::OperatorUnavailable { .. }) => StatusCode::BAD_GATEWAY,
            ApiError::Wallet(WalletError::CircuitOpen { .. } | WalletError::RateLimited { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::EventNotFound | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Wallet(WalletError::Store(_) | WalletError::Invariant(_))
            | ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if self.is_internal() {
            tracing::error!(error = %self, code = self.code(), "request failed");
        } else if status.is_server_error() {
            tracing::warn!(code = self.code(), "request could not be completed now");
        } else {
            tracing::info!(code = self.code(), "request refused");
        }
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::Wallet(WalletError::OperatorUnavailable {
                retry_after: Some(wait),
            }) => {
                response.insert_header((header::RETRY_AFTER, wait.as_secs().max(1).to_string()));
            }
            ApiError::Wallet(
                WalletError::CircuitOpen { retry_after } | WalletError::RateLimited { retry_after },
            ) => {
                response.insert_header((
                    header::RETRY_AFTER,
                    retry_after.as_secs().max(1).to_string(),
                ));
            }
            ApiError::Wallet(WalletError::InProgress) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        response.json(ErrorBody {
            code: self.code(),
            message: self.message(),
            field: self.field(),
            transaction_id: match self {
                ApiError::Wallet(WalletError::AlreadyRolledBack {
                    rollback_transaction_id,
                }) => Some(rollback_transaction_id),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn already_rolled_back_names_the_first_rollback_in_camel_case() {
        let error = ApiError::Wallet(WalletError::AlreadyRolledBack {
            rollback_transaction_id: "first".into(),
        });
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "ALREADY_ROLLED_BACK");
        assert_eq!(body["transactionId"], "first");
    }
}
