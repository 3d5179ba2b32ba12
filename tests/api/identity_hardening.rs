//! Identity hardening: platform accounts cannot be taken over from inside an enterprise, nobody
//! grants more than they hold, tokens end with a password change or a deactivation, API keys
//! expire, logins are bounded in size, concurrency and attempts, tokens name their audience, and
//! creating a user tells nothing about other enterprises' accounts.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET, TestApp, assert_error, detail_paths};

/// The id of the user with `email` in the token's enterprise.
async fn user_id(app: &TestApp, token: &str, email: &str) -> String {
    let users: Value = app.get(token, "/users?page_size=200").await.json().await.expect("json");
    let user = users["data"].as_array().expect("data").iter().find(|u| u["email"] == email).expect("user listed");
    user["id"].as_str().expect("id").to_owned()
}

async fn create_key(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post(token, "/settings/api-keys", body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("json")
}

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
async fn an_enterprise_admin_key_cannot_touch_the_platform_admin() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let key = create_key(&app, &admin, json!({"name": "ci", "role": "enterprise_admin"})).await;
    let key = key["key"].as_str().expect("key");
    let admin_id = user_id(&app, &admin, ADMIN_EMAIL).await;
    let path = format!("/users/{admin_id}");

    for body in [
        json!({"password": "taken-over-password"}),
        json!({"role": "viewer"}),
        json!({"status": "deactivated"}),
        json!({"platform_access": false}),
        json!({"name": "Not the admin any more"}),
    ] {
        assert_error(app.put(key, &path, body.clone()).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
    assert_error(app.delete(key, &path).await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // An enterprise admin without platform rights is refused the same way.
    app.create_user(&admin, "local-admin@test.example", "enterprise_admin").await;
    let local = app.token("local-admin@test.example", ADMIN_PASSWORD).await;
    let takeover = app.put(&local, &path, json!({"password": "taken-over-password"})).await;
    assert_error(takeover, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // Nothing changed: the old password works, the account keeps its role, status and rights.
    assert_error(app.login(ADMIN_EMAIL, "taken-over-password").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let fresh = app.admin_token().await;
    let shown: Value = app.get(&fresh, &path).await.json().await.expect("json");
    assert_eq!(shown["role"], "enterprise_admin");
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["name"], "Administrator");
    assert_eq!(shown["platform_access"], true);
    assert_eq!(app.get(&admin, "/enterprises").await.status(), StatusCode::OK, "its token still works");
}

#[tokio::test]
async fn demoting_a_platform_user_removes_its_platform_rights() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    // A second platform principal, so the bootstrap admin can be demoted (nobody demotes themself).
    app.create_user(&admin, "ops@test.example", "platform_admin").await;
    let ops = app.token("ops@test.example", ADMIN_PASSWORD).await;
    let admin_id = user_id(&app, &admin, ADMIN_EMAIL).await;

    let demoted = app.put(&ops, &format!("/users/{admin_id}"), json!({"role": "viewer"})).await;
    assert_eq!(demoted.status(), StatusCode::OK);
    let demoted: Value = demoted.json().await.expect("json");
    assert_eq!(demoted["role"], "viewer");
    assert_eq!(demoted["platform_access"], false, "the grant is visible and gone: {demoted}");

    let create = app
        .post(
            &admin,
            "/enterprises",
            json!({"name": "Mine", "admin_email": "m@m.example", "admin_password": ADMIN_PASSWORD}),
        )
        .await;
    assert_error(create, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_error(app.get(&admin, "/enterprises").await, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // Back to enterprise_admin: the role change does not bring the grant back by itself.
    let restored: Value = app
        .put(&ops, &format!("/users/{admin_id}"), json!({"role": "enterprise_admin"}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(restored["platform_access"], false);
    assert_error(app.get(&admin, "/enterprises").await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // Granting it back is explicit, and needs platform rights.
    let regrant = app.put(&ops, &format!("/users/{admin_id}"), json!({"platform_access": true})).await;
    assert_eq!(regrant.status(), StatusCode::OK);
    assert_eq!(app.get(&admin, "/enterprises").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_key_cannot_mint_a_key_or_user_with_more_rights_than_its_own() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let key = create_key(&app, &admin, json!({"name": "ci", "role": "enterprise_admin"})).await;
    let key = key["key"].as_str().expect("key");

    let platform_key = app.post(key, "/settings/api-keys", json!({"name": "up", "role": "platform_admin"})).await;
    assert_error(platform_key, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let user = |role: &str, platform: bool| {
        json!({"email": "up@test.example", "name": "Up", "role": role, "password": ADMIN_PASSWORD,
               "platform_access": platform})
    };
    assert_error(app.post(key, "/users", user("platform_admin", false)).await, StatusCode::FORBIDDEN, "FORBIDDEN")
        .await;
    assert_error(app.post(key, "/users", user("enterprise_admin", true)).await, StatusCode::FORBIDDEN, "FORBIDDEN")
        .await;
    let staff = app.create_user(&admin, "staff@test.example", "enterprise_admin").await;
    let promote =
        app.put(key, &format!("/users/{}", staff["id"].as_str().expect("id")), json!({"platform_access": true})).await;
    assert_error(promote, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // Equal rights are fine, and the key's user cannot reach the enterprises.
    assert_eq!(app.post(key, "/users", user("enterprise_admin", false)).await.status(), StatusCode::CREATED);
    let minted = app.token("up@test.example", ADMIN_PASSWORD).await;
    assert_error(app.get(&minted, "/enterprises").await, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let listed: Value = app.get(&admin, "/settings/api-keys").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 1, "no key was minted");

    // A platform principal may grant platform rights, visibly.
    let granted = app
        .post(
            &admin,
            "/users",
            json!({"email": "p@test.example", "name": "P", "role": "enterprise_admin",
                                                    "password": ADMIN_PASSWORD, "platform_access": true}),
        )
        .await;
    assert_eq!(granted.status(), StatusCode::CREATED);
    assert_eq!(granted.json::<Value>().await.expect("json")["platform_access"], true);
}

#[tokio::test]
async fn a_password_change_ends_the_users_existing_tokens() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let user = app.create_user(&admin, "pat@test.example", "enterprise_admin").await;
    let path = format!("/users/{}", user["id"].as_str().expect("id"));

    // Changed by an admin.
    let before = app.token("pat@test.example", ADMIN_PASSWORD).await;
    assert_eq!(app.get(&before, "/users").await.status(), StatusCode::OK);
    assert_eq!(app.put(&admin, &path, json!({"password": "second-password"})).await.status(), StatusCode::OK);
    assert_error(app.get(&before, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_error(app.login("pat@test.example", ADMIN_PASSWORD).await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Changed by the user: every earlier token ends, the one used included.
    let one = app.token("pat@test.example", "second-password").await;
    let two = app.token("pat@test.example", "second-password").await;
    assert_eq!(app.put(&one, &path, json!({"password": "third-password"})).await.status(), StatusCode::OK);
    assert_error(app.get(&one, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_error(app.get(&two, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let after = app.token("pat@test.example", "third-password").await;
    assert_eq!(app.get(&after, "/users").await.status(), StatusCode::OK);
    // Other changes leave tokens alone.
    assert_eq!(app.put(&admin, &path, json!({"name": "Pat"})).await.status(), StatusCode::OK);
    assert_eq!(app.get(&after, "/users").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_deactivation_ends_tokens_for_good_even_after_reactivation() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let user = app.create_user(&admin, "temp@test.example", "viewer").await;
    let path = format!("/users/{}", user["id"].as_str().expect("id"));
    let token = app.token("temp@test.example", ADMIN_PASSWORD).await;

    assert_eq!(app.put(&admin, &path, json!({"status": "deactivated"})).await.status(), StatusCode::OK);
    assert_error(app.get(&token, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(app.put(&admin, &path, json!({"status": "active"})).await.status(), StatusCode::OK);
    assert_error(app.get(&token, "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let fresh = app.token("temp@test.example", ADMIN_PASSWORD).await;
    assert_eq!(app.get(&fresh, "/users").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_expired_api_key_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let past = app
        .post(
            &admin,
            "/settings/api-keys",
            json!({"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let body = assert_error(past, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&body), ["expires_at"]);

    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let created = create_key(&app, &admin, json!({"name": "short", "role": "viewer", "expires_at": in_an_hour})).await;
    assert!(created["expires_at"].is_string(), "{created}");
    let key = created["key"].as_str().expect("key");
    assert_eq!(app.get(key, "/settings").await.status(), StatusCode::OK);
    let listed: Value = app.get(&admin, "/settings/api-keys").await.json().await.expect("json");
    assert_eq!(listed["data"][0]["expires_at"], created["expires_at"]);
    let forever = create_key(&app, &admin, json!({"name": "forever", "role": "viewer"})).await;
    assert!(forever["expires_at"].is_null());

    // The hour passes.
    let id = created["id"].as_str().expect("id");
    app.sql(&format!(
        "UPDATE api_keys SET expires_at = {} WHERE id = '{id}'",
        chrono::Utc::now().timestamp_millis() - 1
    ))
    .await;
    assert_error(app.get(key, "/settings").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(app.get(forever["key"].as_str().expect("key"), "/settings").await.status(), StatusCode::OK);
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

fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(&Header::default(), claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes())).expect("sign")
}

#[tokio::test]
async fn tokens_without_our_audience_or_issuer_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token().await;
    let sub = user_id(&app, &admin, ADMIN_EMAIL).await;
    let settings: Value = app.get(&admin, "/settings").await.json().await.expect("json");
    let ent = settings["enterprise_id"].as_str().expect("enterprise id");
    let now = chrono::Utc::now().timestamp();
    let claims = |extra: Value| {
        let mut claims =
            json!({"sub": sub, "ent": ent, "role": "enterprise_admin", "iat": now, "exp": now + 600, "jti": "j"});
        claims.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        sign(&claims)
    };
    for extra in [
        json!({}),
        json!({"iss": "dibop"}),
        json!({"iss": "dibop", "aud": "some-other-api"}),
        json!({"iss": "someone-else", "aud": "dibop-api"}),
    ] {
        assert_error(app.get(&claims(extra), "/users").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    let right = claims(json!({"iss": "dibop", "aud": "dibop-api"}));
    assert_eq!(app.get(&right, "/users").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_jwt_secret_shorter_than_32_bytes_stops_the_start() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = dibop::Config::new(data_dir.path().to_path_buf());
    config.jwt_secret = Some("x".repeat(31).into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let outcome = tokio::time::timeout(Duration::from_secs(30), dibop::serve(listener, config, std::future::pending()))
        .await
        .expect("serve returns instead of serving");
    let err = outcome.expect_err("a short secret is refused");
    assert!(format!("{err:#}").contains("at least 32"), "{err:#}");
}

#[tokio::test]
async fn creating_a_user_tells_nothing_about_other_enterprises_accounts() {
    let app = TestApp::spawn().await;
    let first = app.admin_token().await;
    app.create_user(&first, "shared@person.example", "viewer").await;
    let second = app.second_enterprise("northside").await;

    // The second enterprise creates the same address, and a fresh one: the same answer.
    let body = |email: &str| json!({"email": email, "name": "N", "role": "viewer", "password": "northside-password"});
    let taken = app.post(&second, "/users", body("shared@person.example")).await;
    let fresh = app.post(&second, "/users", body("fresh@person.example")).await;
    assert_eq!(taken.status(), StatusCode::CREATED);
    assert_eq!(fresh.status(), StatusCode::CREATED);
    let taken: Value = taken.json().await.expect("json");
    let fresh: Value = fresh.json().await.expect("json");
    let keys = |v: &Value| v.as_object().expect("object").keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&taken), keys(&fresh));
    assert_eq!(taken["status"], fresh["status"]);

    // Its account works like any other: logging in by address alone reaches it...
    let token = app.token("shared@person.example", "northside-password").await;
    let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
    assert_eq!(settings["slug"], "northside");
    // ...and the first enterprise's account with its own password.
    let token = app.token("shared@person.example", ADMIN_PASSWORD).await;
    let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
    assert_eq!(settings["slug"], "default");
    // A wrong password is the same 401 as for an address nobody has.
    let wrong =
        assert_error(app.login("shared@person.example", "nope-nope").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            .await;
    let unknown =
        assert_error(app.login("nobody@person.example", "nope-nope").await, StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
            .await;
    assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);
    // Only its own enterprise's users collide.
    let again = app.post(&second, "/users", body("shared@person.example")).await;
    assert_error(again, StatusCode::CONFLICT, "CONFLICT").await;
}

#[tokio::test]
async fn one_password_in_two_enterprises_logs_into_the_oldest_unless_one_is_named() {
    let app = TestApp::spawn().await;
    let first = app.admin_token().await;
    app.create_user(&first, "twice@person.example", "viewer").await;
    let second = app.second_enterprise("southside").await;
    app.create_user(&second, "twice@person.example", "viewer").await;

    let slug = |token: String| {
        let app = &app;
        async move {
            let settings: Value = app.get(&token, "/settings").await.json().await.expect("json");
            settings["slug"].as_str().expect("slug").to_owned()
        }
    };
    assert_eq!(slug(app.token("twice@person.example", ADMIN_PASSWORD).await).await, "default");
    let named = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"email": "twice@person.example", "password": ADMIN_PASSWORD, "enterprise": "southside"}))
        .send()
        .await
        .expect("login");
    assert_eq!(named.status(), StatusCode::OK);
    let named: Value = named.json().await.expect("json");
    assert_eq!(slug(named["access_token"].as_str().expect("token").to_owned()).await, "southside");
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
