// A signed wallet call from Rust (crates: hmac, sha2, hex, reqwest). Sign the exact bytes sent;
// reuse one client for its connection pool.
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// POSTs `body` to `url` (e.g. `{hub}/wallet/debit`) signed with `secret`.
pub async fn signed_post(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    idempotency_key: &str,
    body: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body.as_bytes());
    mac.update(timestamp.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", idempotency_key)
        .header("X-Timestamp", timestamp)
        .header("X-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
}
