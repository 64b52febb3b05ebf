//! Many requests at once: one key raced by many clients, and many keys at once.

use std::collections::HashSet;

use futures_util::future::join_all;

use crate::helpers::{answer, new_key, on_both_backends, wallet_body, Backend, TestApp};

on_both_backends!(
    fifty_racing_requests_with_one_key_charge_once,
    two_hundred_distinct_debits_and_credits_add_up_exactly,
);

async fn fifty_racing_requests_with_one_key_charge_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (key, body) = (new_key(), wallet_body("player-005", 1234, "USD"));

    let answers =
        join_all((0..50).map(|_| async { answer(app.debit(&key, &body).await).await })).await;

    let created: Vec<_> = answers.iter().filter(|a| a.status == 201).collect();
    let waiting = answers.iter().filter(|a| a.status == 409).count();
    assert!(!created.is_empty(), "one request completes");
    assert_eq!(
        created.len() + waiting,
        50,
        "only 201 or 409: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(answers
        .iter()
        .filter(|a| a.status == 409)
        .all(|a| a.json["code"] == "REQUEST_IN_PROGRESS"));
    let bodies: HashSet<_> = created.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(bodies.len(), 1, "every 201 is the same answer");
    assert_eq!(app.operator.total_charges(), 1);
    assert_eq!(app.operator.balance("player-005"), Some(25_000 - 1234));
}

async fn two_hundred_distinct_debits_and_credits_add_up_exactly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // player-005 starts at 25,000 cents: 100 debits of 150 and 100 credits of 7.
    let requests: Vec<_> = (0..200)
        .map(|i| {
            if i % 2 == 0 {
                ("debit", 150)
            } else {
                ("credit", 7)
            }
        })
        .collect();

    let answers = join_all(requests.iter().map(|(kind, amount)| async {
        let body = wallet_body("player-005", *amount, "USD");
        let response = match *kind {
            "debit" => app.debit(&new_key(), &body).await,
            _ => app.credit(&new_key(), &body).await,
        };
        answer(response).await
    }))
    .await;

    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let ids: HashSet<_> = answers
        .iter()
        .map(|a| a.json["transactionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 200);
    assert_eq!(app.operator.total_charges(), 200);
    assert!(ids.iter().all(|id| app.operator.charges_for(id) == 1));
    assert_eq!(
        app.operator.balance("player-005"),
        Some(25_000 - 100 * 150 + 100 * 7)
    );
}
