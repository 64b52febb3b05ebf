//! `Authorization: Bearer <token>` for the admin API and, when `METRICS_TOKEN` is set, for
//! `/metrics`.

use actix_web::HttpRequest;
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// Compares digests, so the time taken says nothing about how much of the token matched.
pub fn require(request: &HttpRequest, expected: &str) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    let (a, b) = (
        Sha256::digest(expected.as_bytes()),
        Sha256::digest(presented.trim().as_bytes()),
    );
    let difference = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    if difference == 0 {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
