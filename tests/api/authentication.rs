//! Signatures: the exact bytes, the clock, and secret rotation.

use chrono::Utc;

use crate::helpers::{
    answer, new_key, on_both_backends, wallet_body, Backend, Options, TestApp, SECRET,
};

on_both_backends!(
    tampering_and_stale_or_missing_signatures_are_refused,
    both_secrets_of_a_rotation_pair_are_accepted
);

struct Signed<'a> {
    body: &'a str,
    timestamp: Option<String>,
    signature: Option<String>,
}

async fn send(app: &TestApp, request: Signed<'_>) -> crate::helpers::Answer {
    let mut builder = app
        .client
        .post(format!("{}/wallet/debit", app.address))
        .header("Idempotency-Key", new_key())
        .body(request.body.to_owned());
    if let Some(timestamp) = request.timestamp {
        builder = builder.header("X-Timestamp", timestamp);
    }
    if let Some(signature) = request.signature {
        builder = builder.header("X-Signature", signature);
    }
    answer(builder.send().await.unwrap()).await
}

fn sign(secret: &str, body: &str, timestamp: i64) -> (Option<String>, Option<String>) {
    let timestamp = timestamp.to_string();
    let signature = hub::signature::sign(secret.as_bytes(), body.as_bytes(), &timestamp);
    (Some(timestamp), Some(signature))
}

async fn tampering_and_stale_or_missing_signatures_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = wallet_body("player-001", 100, "USD").to_string();
    let now = Utc::now().timestamp();
    let tampered_body = body.replace("100", "1000");
    let (ts, sig) = sign(SECRET, &body, now);

    let cases = [
        (
            "tampered body",
            Signed {
                body: &tampered_body,
                timestamp: ts.clone(),
                signature: sig.clone(),
            },
            "INVALID_SIGNATURE",
        ),
        (
            "tampered signature",
            Signed {
                body: &body,
                timestamp: ts.clone(),
                signature: sig.clone().map(|s| s.replace(&s[..2], "00")),
            },
            "INVALID_SIGNATURE",
        ),
        (
            "timestamp changed after signing",
            Signed {
                body: &body,
                timestamp: Some((now + 1).to_string()),
                signature: sig.clone(),
            },
            "INVALID_SIGNATURE",
        ),
        (
            "signed with another secret",
            {
                let (t, s) = sign("not-our-secret-not-our-secret-not-ours", &body, now);
                Signed {
                    body: &body,
                    timestamp: t,
                    signature: s,
                }
            },
            "INVALID_SIGNATURE",
        ),
        (
            "stale by ten minutes",
            {
                let (t, s) = sign(SECRET, &body, now - 600);
                Signed {
                    body: &body,
                    timestamp: t,
                    signature: s,
                }
            },
            "STALE_TIMESTAMP",
        ),
        (
            "from ten minutes in the future",
            {
                let (t, s) = sign(SECRET, &body, now + 600);
                Signed {
                    body: &body,
                    timestamp: t,
                    signature: s,
                }
            },
            "STALE_TIMESTAMP",
        ),
        (
            "no signature",
            Signed {
                body: &body,
                timestamp: ts.clone(),
                signature: None,
            },
            "INVALID_SIGNATURE",
        ),
        (
            "no timestamp",
            Signed {
                body: &body,
                timestamp: None,
                signature: sig.clone(),
            },
            "INVALID_SIGNATURE",
        ),
        (
            "a timestamp that is not a number",
            Signed {
                body: &body,
                timestamp: Some("yesterday".into()),
                signature: sig.clone(),
            },
            "INVALID_SIGNATURE",
        ),
    ];
    for (what, request, code) in cases {
        let response = send(&app, request).await;
        assert_eq!(response.status, 401, "{what}: {}", response.text);
        assert_eq!(response.json["code"], code, "{what}");
        assert!(!response.text.contains(SECRET), "{what}: the secret leaks");
    }
    assert!(
        app.operator.calls().is_empty(),
        "nothing unauthenticated reaches the operator"
    );
}

async fn both_secrets_of_a_rotation_pair_are_accepted(backend: Backend) {
    const NEXT: &str = "next-secret-0123456789-0123456789-abcdef";
    let options = Options {
        secrets: vec![NEXT.to_owned(), SECRET.to_owned()],
        ..Options::default()
    };
    let app = TestApp::spawn_with(backend, options).await;

    for secret in [SECRET, NEXT] {
        let body = wallet_body("player-001", 100, "USD").to_string();
        let (timestamp, signature) = sign(secret, &body, Utc::now().timestamp());
        let response = send(
            &app,
            Signed {
                body: &body,
                timestamp,
                signature,
            },
        )
        .await;
        assert_eq!(response.status, 201, "{}", response.text);
    }
}
