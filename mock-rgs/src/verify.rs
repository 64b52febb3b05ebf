//! Both signature schemes a receiver can check, written independently of the hub's signer.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// `X-Signature` = hex HMAC-SHA256(key, body ++ X-Timestamp).
pub fn legacy(key: &[u8], body: &[u8], timestamp: Option<&str>, signature: Option<&str>) -> bool {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return false;
    };
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    mac(key, &[body, timestamp.as_bytes()])
        .verify_slice(&signature)
        .is_ok()
}

/// Standard Webhooks: `webhook-signature` holds space-separated `v1,<base64>` entries over
/// `webhook-id.webhook-timestamp.body`; any one matching is enough.
pub fn standard(
    key: &[u8],
    body: &[u8],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
) -> bool {
    let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
        return false;
    };
    let engine = base64::engine::general_purpose::STANDARD;
    signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|encoded| {
            let Ok(signature) = engine.decode(encoded) else {
                return false;
            };
            mac(
                key,
                &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
            )
            .verify_slice(&signature)
            .is_ok()
        })
}

/// A secret as configured: `whsec_<base64>` (Standard Webhooks style) or the raw bytes.
pub fn key_from_secret(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}
