//! Routes of the mock operator.

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use crate::state::{Books, Drift, FaultKind, Operation, SharedBooks, TransactionRecord};
use crate::wallet::{Answer, Movement};
use crate::{money, rollback, wallet, MockOperatorConfig};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(health))
        .route("/v2/players/simulate/error", web::post().to(simulate_error))
        .route("/v2/players/{player}/withdraw", web::post().to(withdraw))
        .route("/v2/players/{player}/deposit", web::post().to(deposit))
        .route("/v2/players/{player}/rollback", web::post().to(rollback))
        .route("/v2/players/{player}/balance", web::get().to(balance))
        .route("/v2/transactions", web::get().to(list_transactions))
        .route("/_mock/charges", web::get().to(charges))
        .route("/_mock/calls", web::get().to(calls))
        .route("/_mock/drift", web::post().to(drift));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn withdraw(
    player: web::Path<String>,
    body: web::Bytes,
    books: web::Data<SharedBooks>,
    limits: web::Data<MockOperatorConfig>,
) -> HttpResponse {
    wallet_call(&player, Movement::Withdraw, &body, &books, &limits).await
}

async fn deposit(
    player: web::Path<String>,
    body: web::Bytes,
    books: web::Data<SharedBooks>,
    limits: web::Data<MockOperatorConfig>,
) -> HttpResponse {
    wallet_call(&player, Movement::Deposit, &body, &books, &limits).await
}

async fn wallet_call(
    player: &str,
    movement: Movement,
    body: &[u8],
    books: &SharedBooks,
    limits: &MockOperatorConfig,
) -> HttpResponse {
    let path = format!("/v2/players/{player}/{}", movement_path(movement));
    guarded_call(
        &path,
        body,
        books,
        limits,
        |books| match wallet::parse_call(body) {
            Ok(call) => wallet::apply(books, player, movement, &call),
            Err(answer) => answer,
        },
    )
    .await
}

async fn rollback(
    player: web::Path<String>,
    body: web::Bytes,
    books: web::Data<SharedBooks>,
    limits: web::Data<MockOperatorConfig>,
) -> HttpResponse {
    let path = format!("/v2/players/{player}/rollback");
    guarded_call(
        &path,
        &body,
        &books,
        &limits,
        |books| match rollback::parse_call(&body) {
            Ok(call) => rollback::apply(books, &player, &call),
            Err(answer) => answer,
        },
    )
    .await
}

/// Any call that moves money goes through the same rate limit, faults and call log.
async fn guarded_call(
    path: &str,
    body: &[u8],
    books: &SharedBooks,
    limits: &MockOperatorConfig,
    apply: impl FnOnce(&mut Books) -> Answer,
) -> HttpResponse {
    let transaction_id = wallet::transaction_id_of(body);
    let (answer, late_by) = {
        let mut books = books.lock();
        let (answer, late_by) = decide_call(&mut books, limits, apply);
        books.record_call(path, transaction_id, answer.status().as_u16());
        (answer, late_by)
    };
    if let Some(delay) = late_by {
        tokio::time::sleep(delay).await;
    }
    answer
}

fn decide_call(
    books: &mut Books,
    limits: &MockOperatorConfig,
    apply: impl FnOnce(&mut Books) -> Answer,
) -> (HttpResponse, Option<Duration>) {
    if let Err(wait) = books.admit(limits.requests_per_minute, Instant::now()) {
        return (
            too_many_requests(wait.as_secs_f64().ceil().max(1.0) as u64),
            None,
        );
    }
    let mut late_by = None;
    match books.next_fault() {
        Some(FaultKind::ServerError) => {
            let body = json!({"status": "FAILED", "message": "simulated server error"});
            return (HttpResponse::InternalServerError().json(body), None);
        }
        Some(FaultKind::RateLimited {
            retry_after_seconds,
        }) => return (too_many_requests(retry_after_seconds), None),
        Some(FaultKind::Timeout { delay }) => late_by = Some(delay),
        None => {}
    }
    // A timeout fault still applies the call: the money moves, only the answer is late.
    let answer = apply(books);
    let status = actix_web::http::StatusCode::from_u16(answer.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let response = HttpResponse::build(status)
        .content_type("application/json")
        .body(answer.body);
    (response, late_by)
}

fn too_many_requests(retry_after_seconds: u64) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", retry_after_seconds.to_string()))
        .json(json!({"status": "FAILED", "message": "rate limit exceeded"}))
}

fn movement_path(movement: Movement) -> &'static str {
    match movement {
        Movement::Withdraw => "withdraw",
        Movement::Deposit => "deposit",
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimulateError {
    error_type: String,
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "one_u64")]
    retry_after_seconds: u64,
    #[serde(default = "default_delay_ms")]
    delay_ms: u64,
}

fn one() -> u32 {
    1
}

fn one_u64() -> u64 {
    1
}

fn default_delay_ms() -> u64 {
    10_000
}

async fn simulate_error(
    request: web::Json<SimulateError>,
    books: web::Data<SharedBooks>,
) -> HttpResponse {
    let kind = match request.error_type.as_str() {
        "500" => FaultKind::ServerError,
        "429" => FaultKind::RateLimited {
            retry_after_seconds: request.retry_after_seconds,
        },
        "timeout" => FaultKind::Timeout {
            delay: Duration::from_millis(request.delay_ms),
        },
        other => {
            let message = format!("errorType must be 500, 429 or timeout, not {other:?}");
            return HttpResponse::BadRequest().json(json!({"message": message}));
        }
    };
    books.lock().inject_fault(kind, request.count);
    HttpResponse::Ok().json(json!({"errorType": request.error_type, "count": request.count}))
}

async fn balance(player: web::Path<String>, books: web::Data<SharedBooks>) -> HttpResponse {
    let books = books.lock();
    let Some(account) = books.accounts.get(player.as_str()) else {
        return HttpResponse::NotFound()
            .json(json!({"status": "PLAYER_NOT_FOUND", "message": "player not found"}));
    };
    let body = BalanceBody {
        player_id: &player,
        balance: money::major_json(account.balance_minor, &account.currency),
        currency: &account.currency,
    };
    HttpResponse::Ok().json(body)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BalanceBody<'a> {
    player_id: &'a str,
    balance: Box<RawValue>,
    currency: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    start_date: Option<String>,
    end_date: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListedTransaction<'a> {
    transaction_id: &'a str,
    player_id: &'a str,
    #[serde(rename = "type")]
    operation: Operation,
    amount: Box<RawValue>,
    currency: &'a str,
    status: &'a str,
    created_at: DateTime<Utc>,
    /// Rollbacks only, hence skipped for the other rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    original_transaction_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refunded_amount: Option<Box<RawValue>>,
}

impl<'a> ListedTransaction<'a> {
    fn of(record: &'a TransactionRecord) -> Self {
        let rollback = record.rollback.as_ref();
        Self {
            transaction_id: &record.transaction_id,
            player_id: &record.player_id,
            operation: record.operation,
            amount: money::major_json(record.amount_minor, &record.currency),
            currency: &record.currency,
            status: record.status,
            created_at: record.created_at,
            original_transaction_id: rollback.map(|r| r.original_transaction_id.as_str()),
            refunded: rollback.map(|r| r.refunded),
            refunded_amount: rollback
                .map(|r| money::major_json(r.refunded_minor, &record.currency)),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListPage<'a> {
    data: Vec<ListedTransaction<'a>>,
    next_cursor: Option<&'a str>,
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

/// Transactions created in `[startDate, endDate]`, ordered by id, paged by an opaque cursor.
async fn list_transactions(
    query: web::Query<ListQuery>,
    books: web::Data<SharedBooks>,
) -> HttpResponse {
    let bound = |text: &Option<String>, name: &str| match text {
        None => Ok(None),
        Some(text) => parse_instant(text)
            .map(Some)
            .ok_or_else(|| format!("{name} must be an ISO 8601 date or instant")),
    };
    let (start, end) = match (
        bound(&query.start_date, "startDate"),
        bound(&query.end_date, "endDate"),
    ) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(message), _) | (_, Err(message)) => {
            return HttpResponse::BadRequest().json(json!({"message": message}))
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let books = books.lock();
    let after = query.cursor.clone().unwrap_or_default();
    let mut page: Vec<_> = books
        .transactions
        .range::<String, _>((
            std::ops::Bound::Excluded(&after),
            std::ops::Bound::Unbounded,
        ))
        .map(|(_, record)| record)
        .filter(|record| start.is_none_or(|start| record.created_at >= start))
        .filter(|record| end.is_none_or(|end| record.created_at <= end))
        .take(limit + 1)
        .collect();
    let has_more = page.len() > limit;
    page.truncate(limit);
    let next_cursor = has_more
        .then(|| page.last().map(|r| r.transaction_id.as_str()))
        .flatten();
    let data = page
        .iter()
        .map(|record| ListedTransaction::of(record))
        .collect();
    HttpResponse::Ok().json(ListPage { data, next_cursor })
}

async fn charges(books: web::Data<SharedBooks>) -> HttpResponse {
    let books = books.lock();
    HttpResponse::Ok().json(json!({"total": books.total_charges(), "byTransaction": books.charges}))
}

async fn calls(books: web::Data<SharedBooks>) -> HttpResponse {
    HttpResponse::Ok().json(&books.lock().calls)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DriftRequest {
    kind: String,
    transaction_id: String,
    delta_cents: Option<i64>,
    status: Option<String>,
    currency: Option<String>,
    player_id: Option<String>,
    amount_cents: Option<i64>,
    /// For `refund`: the withdraw the operator refunds on its own.
    original_transaction_id: Option<String>,
}

const STATUSES: [&str; 5] = [
    "SUCCESS",
    "INSUFFICIENT_FUNDS",
    "PLAYER_NOT_FOUND",
    "INVALID_CURRENCY",
    "FAILED",
];

/// `POST /_mock/drift`: make the books disagree with the hub's (see [`Drift`]).
async fn drift(request: web::Json<DriftRequest>, books: web::Data<SharedBooks>) -> HttpResponse {
    let id = request.transaction_id.clone();
    let drift = match request.kind.as_str() {
        "drop" => Drift::Drop { transaction_id: id },
        "amount" => Drift::Amount {
            transaction_id: id,
            delta_minor: request.delta_cents.unwrap_or(1),
        },
        "status" => {
            let wanted = request.status.as_deref().unwrap_or("FAILED");
            let Some(status) = STATUSES.iter().find(|s| **s == wanted) else {
                return HttpResponse::BadRequest()
                    .json(json!({"message": format!("status must be one of {STATUSES:?}")}));
            };
            Drift::Status {
                transaction_id: id,
                status,
            }
        }
        "currency" => Drift::Currency {
            transaction_id: id,
            currency: request.currency.clone().unwrap_or("EUR".into()),
        },
        "type" => Drift::Type { transaction_id: id },
        "player" => Drift::Player {
            transaction_id: id,
            player_id: request.player_id.clone().unwrap_or("player-x".into()),
        },
        "extra" => Drift::Extra {
            record: TransactionRecord::settled(
                &id,
                request.player_id.as_deref().unwrap_or("player-001"),
                Operation::Withdraw,
                request.amount_cents.unwrap_or(100),
                request.currency.as_deref().unwrap_or("USD"),
                "SUCCESS",
                chrono::Utc::now(),
            ),
        },
        "refund" => {
            let Some(original) = request.original_transaction_id.clone() else {
                return HttpResponse::BadRequest()
                    .json(json!({"message": "refund needs originalTransactionId"}));
            };
            Drift::Refund {
                transaction_id: id,
                original_transaction_id: original,
            }
        }
        other => {
            let message = format!(
                "kind must be drop, amount, status, currency, type, player, extra or refund, not {other:?}"
            );
            return HttpResponse::BadRequest().json(json!({"message": message}));
        }
    };
    if books.lock().drift(drift) {
        HttpResponse::Ok()
            .json(json!({"kind": request.kind, "transactionId": request.transaction_id}))
    } else if request.kind == "refund" {
        let message = "originalTransactionId must be a charged, unrefunded withdraw \
                       and transactionId unused";
        HttpResponse::NotFound().json(json!({"message": message}))
    } else {
        HttpResponse::NotFound().json(json!({"message": "no such transaction"}))
    }
}
