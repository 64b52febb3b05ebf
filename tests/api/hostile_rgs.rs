//! An RGS that misbehaves on purpose, scripted with `Hostile`: redirects, an absurd
//! `Retry-After`, answers slower than the attempt timeout, 410 Gone, and a drainer killed while
//! the RGS holds its requests. Only a 2xx to the POST itself is a delivery, and a crash
//! re-sends only what was in flight.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{
    answer, eventually, new_key, on_both_backends, post_signed, spawn_hub_process, wallet_body,
    Backend, Options, TestApp,
};
use crate::hostile::{Hostile, Reply, Seen};

on_both_backends!(
    a_redirect_is_a_failed_attempt_never_followed_and_the_event_is_delivered_once_by_a_2xx,
    a_huge_retry_after_is_clamped_to_five_minutes_and_the_drainer_keeps_delivering,
    an_answer_slower_than_the_attempt_timeout_is_a_failed_attempt_until_the_rgs_speeds_up,
    a_410_dead_letters_after_one_attempt,
    a_drainer_killed_mid_round_redelivers_only_what_was_in_flight,
);

const PATIENCE: Duration = Duration::from_secs(20);
const WEBHOOK_PATH: &str = "/rgs/webhooks";
const ELSEWHERE: &str = "/rgs/moved-here";

fn webhook_url(rgs: &Hostile) -> String {
    format!("{}{WEBHOOK_PATH}", rgs.base_url)
}

/// A hub that does not drain on its own (the test runs `Drainer::run_once`), sending to `rgs`.
fn drained_by_hand(rgs: &Hostile) -> Options {
    Options {
        drain: false,
        rgs_url: Some(webhook_url(rgs)),
        ..Options::default()
    }
}

/// The event a webhook request carries, the same in its header and its body.
fn event_id(seen: &Seen) -> String {
    let id = seen
        .header("X-Event-Id")
        .expect("every webhook carries X-Event-Id");
    assert_eq!(seen.json_text("eventId").as_deref(), Some(id));
    id.to_owned()
}

/// The status codes of the event's recorded attempts, oldest first (`None`: no answer).
async fn attempt_codes(app: &TestApp, event_id: &str) -> Vec<Option<i32>> {
    app.attempts(event_id)
        .await
        .iter()
        .map(|a| a.status_code)
        .collect()
}

/// Runs the hub's drainer round by round until the event is delivered.
async fn drain_until_delivered(app: &TestApp, event_id: &str) {
    eventually(
        &format!("event {event_id} to be delivered"),
        PATIENCE,
        || async {
            app.hub.drainer.run_once().await.unwrap();
            (app.event(event_id).await.status == "DELIVERED").then_some(())
        },
    )
    .await;
}

async fn count_delivered(app: &TestApp) -> usize {
    app.all_events()
        .await
        .iter()
        .filter(|e| e.status == "DELIVERED")
        .count()
}

async fn a_redirect_is_a_failed_attempt_never_followed_and_the_event_is_delivered_once_by_a_2xx(
    backend: Backend,
) {
    let base_url = Arc::new(OnceLock::<String>::new());
    let status = Arc::new(AtomicU16::new(200));
    let answered = Arc::new(Mutex::new(Vec::<(String, u16)>::new()));
    let rgs = Hostile::start({
        let (base_url, status, answered) = (base_url.clone(), status.clone(), answered.clone());
        move |seen, _| {
            if seen.path != WEBHOOK_PATH {
                return Reply::new(200, "a redirect target that would take anything");
            }
            let code = status.load(SeqCst);
            answered.lock().unwrap().push((event_id(seen), code));
            let reply = Reply::new(code, "");
            if (300..400).contains(&code) {
                let target = format!("{}{ELSEWHERE}", base_url.get().unwrap());
                reply.header("Location", target)
            } else {
                reply
            }
        }
    });
    base_url.set(rgs.base_url.clone()).unwrap();
    let app = TestApp::spawn_with(backend, drained_by_hand(&rgs)).await;
    let drainer = &app.hub.drainer;

    for code in [301, 302, 307] {
        status.store(code, SeqCst);
        let event_id = app.debit_event().await;
        assert_eq!(drainer.run_once().await.unwrap(), 1);

        let row = app.event(&event_id).await;
        assert_eq!(row.status, "PENDING", "a {code} is not a delivery");
        assert_eq!((row.attempts, row.delivered_at), (1, None));
        assert!(
            row.last_error
                .as_deref()
                .is_some_and(|e| e.contains(&code.to_string())),
            "{:?}",
            row.last_error
        );
        let codes = attempt_codes(&app, &event_id).await;
        assert_eq!(codes, [Some(i32::from(code))]);
        assert!(
            rgs.seen_on(ELSEWHERE).is_empty(),
            "the {code}'s Location was requested: the redirect was followed"
        );

        status.store(200, SeqCst);
        drain_until_delivered(&app, &event_id).await;
        let codes = attempt_codes(&app, &event_id).await;
        assert_eq!(codes, [Some(i32::from(code)), Some(200)]);
        let answers: Vec<u16> = answered
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| *id == event_id)
            .map(|(_, code)| *code)
            .collect();
        assert_eq!(
            answers,
            [code, 200],
            "one redirect, then exactly one 2xx to the POST itself"
        );
    }
    assert!(rgs.seen_on(ELSEWHERE).is_empty());
    assert!(
        rgs.seen().iter().all(|s| s.method == "POST"),
        "a followed 301 or 302 would have come back as a GET"
    );
}

async fn a_huge_retry_after_is_clamped_to_five_minutes_and_the_drainer_keeps_delivering(
    backend: Backend,
) {
    let rgs = Hostile::start(|_, earlier| {
        if earlier.is_empty() {
            Reply::new(429, "come back in three trillion years")
                .header("Retry-After", "99999999999999999999")
        } else {
            Reply::new(200, "")
        }
    });
    // The in-test hub only serves reads of the books; the process under test drains.
    let app = TestApp::spawn_with(
        backend,
        Options {
            drain: false,
            ..Options::default()
        },
    )
    .await;
    let url = webhook_url(&rgs);
    let mut hub = spawn_hub_process(&app, &[("RGS_WEBHOOK_URL", &url)]);
    let address = hub.address.clone();
    let debit_at_hub = || async {
        let body = wallet_body("player-001", 100, "USD").to_string();
        let response =
            answer(post_signed(&app.client, &address, "/wallet/debit", &new_key(), &body).await)
                .await;
        assert_eq!(response.status, 201, "{}", response.text);
        app.only_event_of(response.json["transactionId"].as_str().unwrap())
            .await
    };

    let limited = debit_at_hub().await;
    let attempt = eventually("the 429 to be recorded", PATIENCE, || async {
        app.attempts(&limited).await.into_iter().next()
    })
    .await;
    assert_eq!(attempt.status_code, Some(429));
    let row = app.event(&limited).await;
    assert_eq!((row.status.as_str(), row.attempts), ("PENDING", 1));
    let wait = (row.next_attempt_at - attempt.attempted_at)
        .to_std()
        .expect("the retry is after the attempt");
    // 300 s, the clamp, is more than any step of the schedule (100 ms ± 20 %) asks.
    assert!(
        wait >= Duration::from_secs(299) && wait <= Duration::from_secs(305),
        "retry scheduled {wait:?} after the attempt, not the clamped 300 s"
    );
    assert!(hub.is_running(), "an absurd Retry-After killed the process");

    let later = debit_at_hub().await;
    let started = Instant::now();
    eventually(
        "the later event to be delivered at once",
        Duration::from_secs(5),
        || async { (app.event(&later).await.status == "DELIVERED").then_some(()) },
    )
    .await;

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not held back by the first event's Retry-After"
    );
    assert!(hub.is_running());
    let ready = app
        .client
        .get(format!("{address}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "no background loop is failing");
    let row = app.event(&limited).await;
    assert_eq!((row.status.as_str(), row.attempts), ("PENDING", 1));
    let tries: Vec<String> = rgs.seen().iter().map(event_id).collect();
    assert_eq!(
        tries,
        [limited, later],
        "the limited event waits, nothing else is sent"
    );
}

async fn an_answer_slower_than_the_attempt_timeout_is_a_failed_attempt_until_the_rgs_speeds_up(
    backend: Backend,
) {
    const RGS_DELAY: Duration = Duration::from_secs(10);
    let slow = Arc::new(AtomicBool::new(true));
    let rgs = Hostile::start({
        let slow = slow.clone();
        move |_, _| {
            if slow.load(SeqCst) {
                Reply::new(200, "too late").after(RGS_DELAY)
            } else {
                Reply::new(200, "")
            }
        }
    });
    let app = TestApp::spawn_with(
        backend,
        Options {
            webhook_attempt_timeout: Duration::from_millis(300),
            ..drained_by_hand(&rgs)
        },
    )
    .await;
    let drainer = &app.hub.drainer;
    let event_id = app.debit_event().await;

    let started = Instant::now();
    assert_eq!(drainer.run_once().await.unwrap(), 1);
    let took = started.elapsed();

    assert!(
        took < RGS_DELAY / 2,
        "the drainer waited {took:?} for an answer instead of giving up after 300 ms"
    );
    assert_eq!(rgs.seen().len(), 1, "the POST reached the RGS");
    let row = app.event(&event_id).await;
    assert_eq!((row.status.as_str(), row.attempts), ("PENDING", 1));
    let attempts = app.attempts(&event_id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, None, "no answer, no status");
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("no answer within 300 ms")
    );
    assert!(
        attempts[0].duration_ms >= 300,
        "{}",
        attempts[0].duration_ms
    );

    slow.store(false, SeqCst);
    drain_until_delivered(&app, &event_id).await;
    let codes = attempt_codes(&app, &event_id).await;
    assert_eq!(codes, [None, Some(200)]);
    assert_eq!(rgs.seen().len(), 2);
}

async fn a_410_dead_letters_after_one_attempt(backend: Backend) {
    let rgs = Hostile::start(|_, _| {
        Reply::json(410, json!({"error": "this receiver is gone"})).header("Retry-After", "1")
    });
    let app = TestApp::spawn_with(backend, drained_by_hand(&rgs)).await;
    let drainer = &app.hub.drainer;
    let event_id = app.debit_event().await;

    assert_eq!(drainer.run_once().await.unwrap(), 1);

    let row = app.event(&event_id).await;
    assert_eq!(
        (row.status.as_str(), row.attempts),
        ("DEAD_LETTER", 1),
        "410 is final though the schedule has three more steps"
    );
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("410")));
    let codes = attempt_codes(&app, &event_id).await;
    assert_eq!(codes, [Some(410)]);
    assert_eq!(
        drainer.run_once().await.unwrap(),
        0,
        "nothing is left to claim"
    );
    assert_eq!(rgs.seen().len(), 1, "sent once, never again");
}

async fn a_drainer_killed_mid_round_redelivers_only_what_was_in_flight(backend: Backend) {
    const EVENTS: usize = 40;
    const ANSWERED: usize = 20;
    const CONCURRENCY: usize = 4;
    let healed = Arc::new(AtomicBool::new(false));
    // Answers the first ANSWERED requests at once, then holds every request (far past the test)
    // until healed.
    let rgs = Hostile::start({
        let healed = healed.clone();
        move |_, earlier| {
            if earlier.len() < ANSWERED || healed.load(SeqCst) {
                Reply::new(200, "")
            } else {
                Reply::new(200, "").after(Duration::from_secs(3600))
            }
        }
    });
    let app = TestApp::spawn_with(
        backend,
        Options {
            drain: false,
            ..Options::default()
        },
    )
    .await;
    for _ in 0..EVENTS {
        app.debit_event().await;
    }
    let url = webhook_url(&rgs);
    // The held requests must not time out before the kill: 5 s is ample, and the lease
    // (which the successor waits out) exceeds it by the required second.
    let settings = [
        ("RGS_WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_CONCURRENCY", "4"),
        ("WEBHOOK_BATCH_SIZE", "20"),
        ("WEBHOOK_TIMEOUT_MS", "5000"),
        ("WEBHOOK_LEASE_SECONDS", "6"),
    ];
    let doomed = spawn_hub_process(&app, &settings);
    eventually(
        "the answered events recorded and the next ones held at the RGS",
        PATIENCE,
        || async {
            let delivered = count_delivered(&app).await;
            (delivered >= ANSWERED && rgs.seen().len() >= ANSWERED + CONCURRENCY).then_some(())
        },
    )
    .await;

    drop(doomed); // SIGKILL, with CONCURRENCY requests unanswered

    let seen = rgs.seen();
    let answered: HashSet<String> = seen[..ANSWERED].iter().map(event_id).collect();
    let in_flight: HashSet<String> = seen[ANSWERED..].iter().map(event_id).collect();
    assert_eq!(answered.len(), ANSWERED);
    assert_eq!(
        seen.len(),
        ANSWERED + CONCURRENCY,
        "the drainer had one request per slot in flight, and no more"
    );
    assert_eq!(in_flight.len(), CONCURRENCY);
    let rows = app.all_events().await;
    let delivered: HashSet<String> = rows
        .iter()
        .filter(|e| e.status == "DELIVERED")
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(
        delivered, answered,
        "the hub recorded what the RGS answered"
    );
    assert!(
        rows.iter()
            .filter(|e| e.status != "DELIVERED")
            .all(|e| e.status == "PENDING" && e.attempts == 0),
        "the kill came before any held request timed out"
    );

    healed.store(true, SeqCst);
    let _successor = spawn_hub_process(&app, &settings);
    app.wait_until_all_delivered(EVENTS).await;

    let mut received: HashMap<String, usize> = HashMap::new();
    for request in rgs.seen_on(WEBHOOK_PATH) {
        *received.entry(event_id(&request)).or_default() += 1;
    }
    assert_eq!(received.len(), EVENTS, "no event lost");
    for id in &answered {
        assert_eq!(
            received[id], 1,
            "{id} was answered before the kill and sent again"
        );
    }
    let twice: HashSet<String> = received
        .iter()
        .filter(|(_, n)| **n == 2)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        twice, in_flight,
        "exactly the events in flight at the kill were received twice"
    );
    assert!(received.values().all(|n| *n <= 2));
}

/// What the drainer has claimed but not yet recorded is all a crash can re-send, so it must
/// stay within the drainer's slots even when recording is slow. Postgres only: the test
/// stalls recording by locking the attempts table, which claims do not touch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "set TEST_DATABASE_URL to run the Postgres half"
)]
async fn a_crash_while_recording_stalls_re_sends_no_more_than_the_drainers_slots() {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    const EVENTS: usize = 30;
    const CONCURRENCY: usize = 4;
    let rgs = Hostile::start(|_, _| Reply::new(200, ""));
    let app = TestApp::spawn_with(
        Backend::Postgres,
        Options {
            drain: false,
            ..Options::default()
        },
    )
    .await;
    for _ in 0..EVENTS {
        app.debit_event().await;
    }
    let hub::store::DatabaseUrl::Postgres(database) = app.database_url.clone() else {
        unreachable!("a Postgres test")
    };
    let mut locker = PgConnection::establish(&database).expect("connect");
    diesel::sql_query("BEGIN").execute(&mut locker).unwrap();
    diesel::sql_query("LOCK TABLE webhook_attempts IN EXCLUSIVE MODE")
        .execute(&mut locker)
        .unwrap();
    let url = webhook_url(&rgs);
    let settings = [
        ("RGS_WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_CONCURRENCY", "4"),
        ("WEBHOOK_TIMEOUT_MS", "5000"),
        ("WEBHOOK_LEASE_SECONDS", "6"),
    ];
    let doomed = spawn_hub_process(&app, &settings);
    eventually("every slot to be used", PATIENCE, || async {
        (rgs.seen().len() >= CONCURRENCY).then_some(())
    })
    .await;
    // An RGS answering at once gets hundreds of requests in this window from a drainer that
    // keeps going without recording.
    let window = Instant::now() + Duration::from_secs(2);
    while Instant::now() < window {
        let sent = rgs.seen().len();
        assert!(
            sent <= CONCURRENCY,
            "{sent} events sent while none could be recorded: a crash now re-sends them all"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    drop(doomed);
    diesel::sql_query("ROLLBACK").execute(&mut locker).unwrap();
    let _successor = spawn_hub_process(&app, &settings);
    app.wait_until_all_delivered(EVENTS).await;
    let received: Vec<String> = rgs.seen().iter().map(event_id).collect();
    let unique: HashSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), EVENTS, "no event lost");
    assert!(received.len() - EVENTS <= CONCURRENCY);
}
