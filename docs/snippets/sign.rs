// A signed wallet call from Rust (crates: hmac, sha2, hex, reqwest), signature version 2. Sign
// the exact bytes sent, together with the method, the path and the Idempotency-Key; reuse one
// client for its connection pool.
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// POSTs `body` to `url` (e.g. `{hub}/wallet/debit`) under `idempotency_key`, signed with
/// `secret`.
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
    let mut request = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", idempotency_key)
        .header("X-Timestamp", &timestamp)
        .header("X-Signature-Version", "2")
        .body(body.to_owned())
        .build()?;
    // METHOD, path (as sent, without the query string), Idempotency-Key, X-Timestamp, body.
    let path = request.url().path();
    let canonical = format!("POST\n{path}\n{idempotency_key}\n{timestamp}\n{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(canonical.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let signature = signature.parse().expect("hex is a valid header value");
    request.headers_mut().insert("X-Signature", signature);
    client.execute(request).await
}
