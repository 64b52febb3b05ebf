//! `POST /wallet/debit` and `POST /wallet/credit`: authenticate, parse, hand to the wallet.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::{body, correlation, AppState};
use crate::domain::{IdempotencyKey, TransactionKind, WalletRequest};
use crate::wallet::{Receipt, WalletCommand};

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
    let body = body::read_limited(&request, payload, state.body_limit).await?;
    state.verifier.verify(
        &body,
        header(&request, "X-Timestamp"),
        header(&request, "X-Signature"),
        chrono::Utc::now().timestamp(),
    )?;
    let key = IdempotencyKey::parse(
        request
            .headers()
            .get("Idempotency-Key")
            .map(|v| v.as_bytes()),
    )?;
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
