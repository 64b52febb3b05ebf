//! Hostile or sloppy input gets a 4xx with a code, never a 5xx, and leaves nothing behind.

use crate::helpers::{answer, new_key, on_both_backends, Backend, TestApp};

on_both_backends!(
    malformed_bodies_get_a_coded_4xx,
    the_hubs_cancellation_names_are_reserved,
    unknown_routes_and_methods_get_a_coded_4xx
);

async fn malformed_bodies_get_a_coded_4xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let too_long = "p".repeat(256);
    let bodies = [
        String::new(),
        "null".into(),
        "[]".into(),
        "\"text\"".into(),
        "{".into(),
        "{\"playerId\":\"player-001\",\"amountCents\":10,\"currency\":\"USD\",\"refId\":\"r\"}trailing".into(),
        r#"{"playerId":["player-001"],"amountCents":10,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":"10","currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":10.5,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":true,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":0,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":-1,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":9223372036854775808,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":1e999,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"","amountCents":10,"currency":"USD","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":10,"currency":"","refId":"r"}"#.into(),
        r#"{"playerId":"player-001","amountCents":10,"currency":"USD","refId":"   "}"#.into(),
        r#"{"playerId":"player-001","amountCents":10,"currency":"USD","refId":"r","meta":[1]}"#.into(),
        format!(r#"{{"playerId":"{too_long}","amountCents":10,"currency":"USD","refId":"r"}}"#),
        "\u{0}\u{1}\u{2}".into(),
        format!("{{\"playerId\":\"{}\"}}", "x".repeat(1024 * 1024)),
    ];
    for body in &bodies {
        let response = answer(app.post_signed("/wallet/debit", &new_key(), body).await).await;
        let shown: String = body.chars().take(80).collect();
        assert!(
            (400..500).contains(&response.status),
            "{shown}: {} {}",
            response.status,
            response.text
        );
        assert!(
            response.json["code"].is_string(),
            "{shown}: no code in {}",
            response.text
        );
        assert!(
            response.json["message"].is_string(),
            "{shown}: no message in {}",
            response.text
        );
    }
    assert!(app.operator.calls().is_empty());
}

/// Nobody may take the key or refId of a cancellation the hub may need to make later.
async fn the_hubs_cancellation_names_are_reserved(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let debit = r#"{"playerId":"player-001","amountCents":10,"currency":"USD","refId":"r-1"}"#;
    let reserved_key = answer(
        app.post_signed("/wallet/debit", "hub-cancel:0192", debit)
            .await,
    )
    .await;
    assert_eq!(reserved_key.status, 400, "{}", reserved_key.text);
    assert_eq!(reserved_key.json["code"], "INVALID_IDEMPOTENCY_KEY");
    let cases = [
        (
            "/wallet/debit",
            r#"{"playerId":"player-001","amountCents":10,"currency":"USD","refId":"hub-cancel:0192"}"#,
            "refId",
        ),
        (
            "/wallet/rollback",
            r#"{"playerId":"player-001","refId":"hub-cancel:0192","originalRefId":"r-1"}"#,
            "refId",
        ),
        (
            "/wallet/rollback",
            r#"{"playerId":"player-001","refId":"rb-1","originalRefId":"hub-cancel:0192"}"#,
            "originalRefId",
        ),
    ];
    for (path, body, field) in cases {
        let refused = answer(app.post_signed(path, &new_key(), body).await).await;
        assert_eq!(refused.status, 400, "{path} {body}: {}", refused.text);
        assert_eq!(refused.json["code"], "INVALID_REQUEST");
        assert_eq!(refused.json["field"], field);
    }
    assert!(app.operator.calls().is_empty());
}

async fn unknown_routes_and_methods_get_a_coded_4xx(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let missing = answer(
        app.client
            .get(format!("{}/wallet/nothing", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let wrong_method = answer(
        app.client
            .get(format!("{}/wallet/debit", app.address))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(
        (missing.status, missing.json["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    assert_eq!(
        (wrong_method.status, wrong_method.json["code"].as_str()),
        (405, Some("METHOD_NOT_ALLOWED"))
    );
}
