//! The admin API behind `Authorization: Bearer <ADMIN_TOKEN>`: inspect and replay webhooks,
//! list the transactions flagged for review. Mounted only when a token is configured.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::bearer;
use super::error::ApiError;
use super::AppState;
use crate::domain::instant::window_bounds;
use crate::domain::request::RequestError;
use crate::outbox::admin::{self, Replayed};
use crate::store::outbox::{Window, DEAD_LETTER, DELIVERED, PENDING};
use crate::wallet::review;

fn authorize(request: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let expected = state.admin_token.as_deref().ok_or(ApiError::NotFound)?;
    bearer::require(request, expected)
}

fn invalid(field: &'static str, message: &str) -> ApiError {
    ApiError::Request(RequestError::Invalid {
        field,
        message: message.to_owned(),
    })
}

#[derive(Deserialize)]
pub(super) struct WindowQuery {
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

fn window(query: &WindowQuery) -> Result<Window, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(status @ (PENDING | DELIVERED | DEAD_LETTER)) => Some(status.to_owned()),
        Some(_) => {
            return Err(invalid(
                "status",
                "status must be PENDING, DELIVERED or DEAD_LETTER",
            ))
        }
    };
    let (from, to) = window_bounds(query.from.as_deref(), query.to.as_deref())
        .map_err(|error| invalid(error.bound, &error.to_string()))?;
    Ok(Window { status, from, to })
}

pub(super) async fn list(
    request: HttpRequest,
    query: web::Query<WindowQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &state)?;
    let events = admin::list(&state.store, window(&query)?, query.limit.unwrap_or(100)).await?;
    Ok(HttpResponse::Ok().json(json!({"count": events.len(), "events": events})))
}

pub(super) async fn show(
    request: HttpRequest,
    event_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &state)?;
    let detail = admin::show(&state.store, &event_id)
        .await?
        .ok_or(ApiError::EventNotFound)?;
    Ok(HttpResponse::Ok().json(detail))
}

pub(super) async fn replay(
    request: HttpRequest,
    event_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &state)?;
    match admin::replay(&state.store, &event_id).await? {
        Replayed::NotFound => Err(ApiError::EventNotFound),
        result => {
            Ok(HttpResponse::Ok().json(json!({"eventId": event_id.as_str(), "result": result})))
        }
    }
}

pub(super) async fn replay_dead_letters(
    request: HttpRequest,
    query: web::Query<WindowQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &state)?;
    let window = window(&query)?;
    let requeued = admin::replay_dead_letters(&state.store, window.from, window.to).await?;
    Ok(HttpResponse::Ok().json(json!({"requeued": requeued})))
}

#[derive(Deserialize)]
pub(super) struct LimitQuery {
    limit: Option<i64>,
}

pub(super) async fn under_review(
    request: HttpRequest,
    query: web::Query<LimitQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &state)?;
    let flagged = review::under_review(&state.store, query.limit.unwrap_or(100)).await?;
    Ok(HttpResponse::Ok().json(json!({"count": flagged.len(), "transactions": flagged})))
}
