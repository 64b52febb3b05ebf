//! The mock RGS verifies what the hub's tests rely on it to verify.

use std::net::TcpListener;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use mock_rgs::{MockRgs, MockRgsConfig};
use sha2::Sha256;

const KEY: &[u8] = b"receiver-test-key-0123456789abcdef";

fn start() -> MockRgs {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    MockRgs::start(
        listener,
        MockRgsConfig {
            key: KEY.to_vec(),
            workers: 1,
        },
    )
    .unwrap()
}

fn hmac(parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    parts.iter().for_each(|p| mac.update(p));
    mac.finalize().into_bytes().to_vec()
}

async fn send(rgs: &MockRgs, event_id: &str, body: &str, tamper: bool) -> u16 {
    let timestamp = "1700000000";
    let legacy = hex::encode(hmac(&[body.as_bytes(), timestamp.as_bytes()]));
    let standard = base64::engine::general_purpose::STANDARD.encode(hmac(&[
        event_id.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        body.as_bytes(),
    ]));
    let sent_body = if tamper {
        body.replace('1', "2")
    } else {
        body.to_owned()
    };
    reqwest::Client::new()
        .post(rgs.webhook_url())
        .header("X-Event-Id", event_id)
        .header("X-Timestamp", timestamp)
        .header("X-Signature", legacy)
        .header("webhook-id", event_id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", format!("v1,{standard}"))
        .body(sent_body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn accepts_signed_deliveries_and_refuses_tampered_ones() {
    let rgs = start();
    assert_eq!(send(&rgs, "e1", r#"{"n":1}"#, false).await, 200);
    assert_eq!(send(&rgs, "e2", r#"{"n":1}"#, true).await, 401);

    let deliveries = rgs.deliveries();
    assert!(deliveries[0].signature_valid && deliveries[0].standard_signature_valid);
    assert!(!deliveries[1].signature_valid && !deliveries[1].standard_signature_valid);
    assert_eq!(deliveries[1].status, 401, "recorded as refused");
    assert_eq!(rgs.accepted_event_ids(), ["e1"]);
}

#[tokio::test]
async fn counts_duplicates_and_fails_on_demand() {
    let rgs = start();
    rgs.fail_next(1, 503, Duration::ZERO);
    let statuses = [
        send(&rgs, "e1", "{}", false).await,
        send(&rgs, "e1", "{}", false).await,
        send(&rgs, "e1", "{}", false).await,
    ];
    assert_eq!(statuses, [503, 200, 200]);
    assert_eq!(rgs.duplicates(), 1);

    let listing: serde_json::Value = reqwest::get(format!("{}?limit=1", rgs.webhook_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["total"], 3);
    assert_eq!(listing["duplicates"], 1);
    assert_eq!(listing["webhooks"].as_array().unwrap().len(), 1);
    let latest = &listing["webhooks"][0];
    let (ms, us) = (
        latest["receivedAtMs"].as_u64().unwrap(),
        latest["receivedAtUs"].as_u64().unwrap(),
    );
    assert_eq!(us / 1000, ms, "both name the same instant");
}
