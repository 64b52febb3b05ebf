//! `POST /wallet/debit`, `/credit`, `/rollback` and `/balance`: authenticate, parse, hand
//! to the wallet.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::{body, correlation, AppState};
use crate::domain::{
    BalanceRequest, IdempotencyKey, RollbackRequest, TransactionKind, WalletRequest,
};
use crate::signature::{Binding, SignedRequest, Version};
use crate::wallet::{Receipt, RollbackCommand, WalletCommand};

pub async fn debit(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    handle(TransactionKind::Debit, request, payload, &state).await
}

pub async fn credit(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    handle(TransactionKind::Credit, request, payload, &state).await
}

pub async fn rollback(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = signed_body(&request, payload, &state, KeyUse::Idempotency).await?;
    let command = RollbackCommand {
        key: idempotency_key(&request)?,
        request: RollbackRequest::parse(&body)?,
        correlation_id: correlation::of(&request),
    };
    let receipt = state.wallet.rollback(command).await?;
    Ok(respond(receipt))
}

/// Signed like the others, but a read: no Idempotency-Key, nothing recorded.
pub async fn balance(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = signed_body(&request, payload, &state, KeyUse::Ignored).await?;
    let balance_request = BalanceRequest::parse(&body, &state.currencies)?;
    let balance = state.wallet.balance(balance_request).await?;
    Ok(HttpResponse::Ok().json(balance))
}

/// What an endpoint does with the `Idempotency-Key` header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    /// It names the operation: a v1 signature used under another key is a replay.
    Idempotency,
    /// It is not read (`/wallet/balance`): the same signed read under another key is the
    /// same read, not a replay.
    Ignored,
}

/// The body, read within the limit, once its signature and timestamp check out (and, for a
/// v1 signature, once the replay guard has seen it used for no other request).
async fn signed_body(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    key_use: KeyUse,
) -> Result<web::Bytes, ApiError> {
    let body = body::read_limited(request, payload, state.body_limit).await?;
    let binding = Binding {
        method: request.method().as_str(),
        path: request.path(),
        idempotency_key: request
            .headers()
            .get("Idempotency-Key")
            .map_or(&[][..], |value| value.as_bytes()),
    };
    let signed = SignedRequest {
        version: header(request, "X-Signature-Version"),
        binding,
        body: &body,
        timestamp: header(request, "X-Timestamp"),
        signature: header(request, "X-Signature"),
    };
    let verified = state
        .verifier
        .verify_request(&signed, chrono::Utc::now().timestamp())?;
    let version = match verified.version {
        Version::V1 => "1",
        Version::V2 => "2",
    };
    state
        .metrics
        .signed_requests
        .with_label_values(&[version])
        .inc();
    if verified.version == Version::V1 {
        let use_of_signature = match key_use {
            KeyUse::Idempotency => binding,
            KeyUse::Ignored => Binding {
                idempotency_key: &[],
                ..binding
            },
        };
        state
            .replay_guard
            .admit(&verified.signature, &use_of_signature, verified.valid_for)
            .await?;
    }
    Ok(body)
}

fn idempotency_key(request: &HttpRequest) -> Result<IdempotencyKey, ApiError> {
    Ok(IdempotencyKey::parse(
        request
            .headers()
            .get("Idempotency-Key")
            .map(|v| v.as_bytes()),
    )?)
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    // A value that is not visible ASCII cannot match a signature; "" keeps it refusable.
    request
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap_or(""))
}

async fn handle(
    kind: TransactionKind,
    request: HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let body = signed_body(&request, payload, state, KeyUse::Idempotency).await?;
    let key = idempotency_key(&request)?;
    let wallet_request = WalletRequest::parse(&body, &state.currencies)?;
    let command = WalletCommand {
        kind,
        key,
        request: wallet_request,
        correlation_id: correlation::of(&request),
    };
    let receipt = state.wallet.execute(command).await?;
    Ok(respond(receipt))
}

fn respond(receipt: Receipt) -> HttpResponse {
    let status = StatusCode::from_u16(receipt.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.content_type("application/json");
    if receipt.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.body(receipt.body)
}
