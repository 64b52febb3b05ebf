//! `GET /health` (the process answers) and `GET /ready` (and its database does).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.store.is_reachable().await {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"code": "NOT_READY", "message": "the database is unreachable"}))
    }
}
