// A balance read from Rust (crates: hmac, sha2, hex, serde_json, reqwest with "json"). Signed
// like every call (version 2), over the exact bytes sent, but with no Idempotency-Key: it is
// the empty line of the signed text, and the read records nothing.
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The player's balance as the operator has it now: 200 `{"playerId","currency","balanceCents"}`,
/// or 404 PLAYER_NOT_FOUND, 422 CURRENCY_MISMATCH, 502/503 (ask again later).
pub async fn balance(
    client: &reqwest::Client,
    hub_url: &str,
    secret: &[u8],
    player_id: &str,
    currency: &str,
) -> Result<(u16, serde_json::Value), reqwest::Error> {
    let body = serde_json::json!({"playerId": player_id, "currency": currency}).to_string();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let mut request = client
        .post(format!("{hub_url}/wallet/balance"))
        .header("Content-Type", "application/json")
        .header("X-Timestamp", &timestamp)
        .header("X-Signature-Version", "2")
        .body(body.clone())
        .build()?;
    let canonical = format!("POST\n{}\n\n{timestamp}\n{body}", request.url().path());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(canonical.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let signature = signature.parse().expect("hex is a valid header value");
    request.headers_mut().insert("X-Signature", signature);
    let response = client.execute(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}
