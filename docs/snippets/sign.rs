// A signed debit from Rust (crates: hmac, sha2, hex, reqwest). Sign the exact bytes sent.
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub async fn signed_debit(hub_url: &str, secret: &[u8], key: &str, body: &str) -> reqwest::Response {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body.as_bytes());
    mac.update(timestamp.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    reqwest::Client::new()
        .post(format!("{hub_url}/wallet/debit"))
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .header("X-Timestamp", timestamp)
        .header("X-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("the hub answers")
}
