//! How far logins go: failed attempts lock an account (at most five 401s however many guesses
//! arrive at once) and are counted per client address too, successful ones use up nothing,
//! oversized logins are refused before any password check, password checks past the gate get 503
//! at once, and a flood of unknown addresses resets neither a lockout nor the API counter.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, assert_error, detail_paths};

/// `n` logins sent at once; the status of each.
async fn parallel_logins(app: &TestApp, n: usize, email: impl Fn(usize) -> String, password: &str) -> Vec<StatusCode> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let request = app.client.post(app.url("/auth/login")).json(&json!({"email": email(i), "password": password}));
        set.spawn(async move { request.send().await.expect("login").status() });
    }
    let mut statuses = Vec::new();
    while let Some(status) = set.join_next().await {
        statuses.push(status.expect("task"));
    }
    statuses
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_with_retry_after() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        assert_eq!(app.login(ADMIN_EMAIL, "guess-guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    let throttled = app.login(ADMIN_EMAIL, "guess-guess").await;
    let retry_after: u64 =
        throttled.headers().get("retry-after").expect("Retry-After").to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_error(throttled, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT").await;
    // Even the right password waits: the throttle is checked before the password.
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not affected.
    assert_eq!(app.login("someone@else.example", "x-x-x-x-x").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_successful_login_clears_earlier_failures() {
    let app = TestApp::spawn().await;
    for _ in 0..4 {
        assert_eq!(app.login(ADMIN_EMAIL, "guess-guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    app.admin_token().await;
    for _ in 0..4 {
        assert_eq!(app.login(ADMIN_EMAIL, "guess-guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn parallel_wrong_guesses_get_at_most_five_401s_and_the_rest_429() {
    // Enough password checks at once that none is refused for capacity: this is about the count.
    let app = TestApp::spawn_with(|config| config.login_concurrency = 64).await;
    let statuses = parallel_logins(&app, 64, |_| ADMIN_EMAIL.to_owned(), "wrong-guess").await;
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 5, "{statuses:?}");
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 59, "{statuses:?}");
    // The account stays locked for the window, even for the right password.
    let locked = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(locked.headers().contains_key("retry-after"));
    assert_error(locked, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT").await;
}

#[tokio::test]
async fn failed_logins_are_also_counted_per_client_address() {
    let app = TestApp::spawn_with(|config| config.login_failures_per_address = 3).await;
    for i in 0..3 {
        let response = app.login(&format!("guess{i}@test.example"), "wrong-guess").await;
        assert_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    // A fourth account from the same address: refused before its password is looked at.
    let throttled = app.login("guess3@test.example", "wrong-guess").await;
    assert!(throttled.headers().contains_key("retry-after"));
    assert_error(throttled, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT").await;
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn successful_logins_do_not_use_up_the_address_budget() {
    let app = TestApp::spawn_with(|config| config.login_failures_per_address = 2).await;
    for _ in 0..5 {
        app.admin_token().await;
    }
    assert_eq!(app.login("x@test.example", "wrong-guess").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn oversized_logins_are_refused_before_any_password_check() {
    // No password check can run on this server: a login that reached one would get 503.
    let app = TestApp::spawn_with(|config| config.login_concurrency = 0).await;
    // Just under the 2 MiB server-wide body limit, so only the login route's own limit stops it.
    let huge_email = format!("{}@test.example", "a".repeat(2_000_000));
    assert_error(app.login(&huge_email, "whatever").await, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    let long_email = format!("{}@test.example", "a".repeat(300));
    let body =
        assert_error(app.login(&long_email, "whatever").await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
            .await;
    assert_eq!(detail_paths(&body), ["email"]);
    for _ in 0..8 {
        let long_password = "p".repeat(2048);
        let body = assert_error(
            app.login(ADMIN_EMAIL, &long_password).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(detail_paths(&body), ["password"]);
    }
    // An ordinary login does reach the password check, and is refused at once with Retry-After.
    let busy = app.login(ADMIN_EMAIL, "wrong-guess").await;
    assert!(busy.headers().contains_key("retry-after"));
    assert_error(busy, StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE").await;
}

#[tokio::test]
async fn logins_beyond_the_password_gate_get_503_at_once() {
    let app = TestApp::spawn_with(|config| {
        config.login_concurrency = 1;
        config.login_failures_per_address = 1000;
    })
    .await;
    let statuses = parallel_logins(&app, 32, |i| format!("nobody{i}@test.example"), "wrong-guess").await;
    let busy = count(&statuses, StatusCode::SERVICE_UNAVAILABLE);
    let checked = count(&statuses, StatusCode::UNAUTHORIZED);
    assert_eq!(busy + checked, 32, "{statuses:?}");
    assert!(busy > 0 && checked > 0, "{statuses:?}");
    // The refused attempts were given back: the admin still logs in.
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_flood_of_unknown_logins_resets_neither_a_lockout_nor_the_api_counter() {
    // A small table, so a few hundred unauthenticated logins would have evicted everything.
    let app = TestApp::spawn_with(|config| {
        config.limiter_buckets = 16;
        config.login_failures_per_address = 100_000;
    })
    .await;
    let token = app.admin_token().await;
    let standing = async || {
        let response = app.get(&token, "/settings").await;
        let header = |name: &str| -> i64 { response.headers()[name].to_str().expect("ascii").parse().expect("number") };
        (header("x-ratelimit-remaining"), header("x-ratelimit-reset"))
    };
    // Start early in a minute window, so the flood ends inside it.
    let (_, reset) = standing().await;
    let left = reset - chrono::Utc::now().timestamp();
    if left < 30 {
        tokio::time::sleep(Duration::from_secs(u64::try_from(left + 1).unwrap_or(1))).await;
    }
    for _ in 0..5 {
        app.get(&token, "/settings").await;
    }
    let (before, window) = standing().await;
    // The admin's account is locked.
    for _ in 0..5 {
        assert_eq!(app.login(ADMIN_EMAIL, "wrong-guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);

    // 400 logins with addresses nobody has, most of them refused at the password gate.
    let statuses = parallel_logins(&app, 400, |i| format!("flood{i}@nowhere.example"), "x").await;
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 0, "{statuses:?}");

    // Still locked, and the enterprise's API counter went on from where it stood.
    let locked = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_error(locked, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT").await;
    let (after, same_window) = standing().await;
    assert_eq!(same_window, window, "the test ran across a window boundary");
    assert_eq!(after, before - 1);
}
