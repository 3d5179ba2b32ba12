//! Host-managed authentication through HTTP: an OAuth2 client-credentials token obtained once
//! for all calls and nodes (a mock token endpoint counts its requests), refreshed once after a
//! 401, static headers and API keys added to the connection's requests only, secrets never
//! shown or logged, and bad settings refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, detail_paths};

const CLIENT_ID: &str = "dealer-app";
const CLIENT_SECRET: &str = "s3cret-client-0042";

/// A token endpoint and a dealer API that accepts only the newest token it issued.
#[derive(Clone, Default)]
struct Dealer {
    /// Form bodies of the token requests, with their Authorization header.
    token_requests: Arc<Mutex<Vec<(String, String)>>>,
    /// The token the API accepts now.
    valid: Arc<Mutex<Option<String>>>,
    /// Headers of each API request.
    api_requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Dealer {
    async fn start() -> (Self, String) {
        let dealer = Self::default();
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/vehicles/{vin}", get(vehicle))
            .route("/other/vehicles/{vin}", get(vehicle))
            .with_state(dealer.clone());
        (dealer, crate::helpers::serve(app).await)
    }

    fn tokens_issued(&self) -> usize {
        self.token_requests.lock().expect("lock").len()
    }

    fn revoke(&self) {
        *self.valid.lock().expect("lock") = None;
    }
}

async fn token(State(dealer): State<Dealer>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let n = {
        let mut seen = dealer.token_requests.lock().expect("lock");
        seen.push((body.clone(), authorization.clone()));
        seen.len()
    };
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    if authorization != format!("Basic {expected}") || !body.contains("grant_type=client_credentials") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "bad client"})),
        );
    }
    // Slow enough that concurrent calls would each ask if nothing kept them to one request.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let issued = format!("tok-{n}-{}", "x".repeat(20));
    *dealer.valid.lock().expect("lock") = Some(issued.clone());
    (StatusCode::OK, axum::Json(json!({"access_token": issued, "token_type": "Bearer", "expires_in": 3600})))
}

async fn vehicle(State(dealer): State<Dealer>, Path(vin): Path<String>, headers: HeaderMap) -> impl IntoResponse {
    let seen: HashMap<String, String> =
        headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    dealer.api_requests.lock().expect("lock").push(seen.clone());
    let valid = dealer.valid.lock().expect("lock").clone();
    let bearer = seen.get("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_owned);
    let api_key = seen.get("x-dealer-key").cloned();
    if bearer.is_none() && api_key.as_deref() != Some("key-7781-abcd") || bearer.is_some() && bearer != valid {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_token"})));
    }
    (StatusCode::OK, axum::Json(json!({"vin": vin, "stock_number": "STK-9"})))
}

fn oauth(authority: &str) -> Value {
    json!({"type": "oauth2_client_credentials", "token_url": format!("http://{authority}/oauth/token"),
           "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": ["vehicles.read"],
           "token_params": {"audience": "dms"}})
}

async fn setup(app: &TestApp, token: &str, authority: &str, auth: Value) -> (String, String) {
    let connection = app
        .create_connection(
            token,
            json!({"name": "fortellis", "system": "rest", "allowed_hosts": [authority], "auth": auth,
                   "headers": {"Subscription-Id": "dealer-42"},
                   "config": {"base_url": format!("http://{authority}/api"),
                              "operations": {"vehicle": {"method": "GET", "path": "/vehicles/{vin}"}}}}),
        )
        .await;
    let orchestration = app
        .create_orchestration(
            token,
            json!({"name": "Stock", "steps": [{"name": "stock", "type": "api_call", "connection": "fortellis",
                                               "operation": "vehicle", "parameters": {"vin": "1HGCM82633A004352"}}],
                   "output": {"stock_number": "${stock.response.stock_number}"}}),
        )
        .await;
    (connection["id"].as_str().expect("id").to_owned(), orchestration)
}

/// Every API-call row of the enterprise as text, to search for secrets.
async fn api_call_text(app: &TestApp, token: &str) -> String {
    let rows: Value = app.get(token, "/api-calls?page_size=100").await.json().await.expect("json");
    rows["data"].to_string()
}

#[tokio::test]
async fn an_oauth2_token_is_obtained_once_for_every_call_and_node_and_refreshed_after_a_401() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (dealer, authority) = Dealer::start().await;
    let (connection, orchestration) = setup(&app, &token, &authority, oauth(&authority)).await;

    let shown: Value = app.get(&token, &format!("/connections/{connection}")).await.json().await.expect("json");
    assert_eq!(shown["auth"]["type"], "oauth2_client_credentials");
    assert_eq!(shown["auth"]["client_secret"], "****0042", "{shown}");
    assert_eq!(shown["auth"]["client_id"], CLIENT_ID);
    assert_eq!(shown["headers"], json!({"Subscription-Id": "dealer-42"}));

    // Four executions at once: one token request.
    let runs = (0..4).map(|_| app.execute(&token, &orchestration, json!({})));
    for result in futures_util::future::join_all(runs).await {
        assert_eq!(result["status"], "success", "{result}");
        assert_eq!(result["output"], json!({"stock_number": "STK-9"}));
    }
    assert_eq!(dealer.tokens_issued(), 1);
    let (form, _) = dealer.token_requests.lock().expect("lock")[0].clone();
    assert!(form.contains("scope=vehicles.read") && form.contains("audience=dms"), "{form}");
    for seen in dealer.api_requests.lock().expect("lock").iter() {
        assert_eq!(seen.get("subscription-id").map(String::as_str), Some("dealer-42"));
        assert!(seen.get("authorization").is_some_and(|a| a.starts_with("Bearer tok-1-")), "{seen:?}");
    }

    // Another node uses the stored token.
    let other = app.another_node().await;
    let result = other.execute(&token, &orchestration, json!({})).await;
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(dealer.tokens_issued(), 1, "the token is shared through the database");

    // Revoked upstream: the 401 gets a new token and the request goes again, once.
    dealer.revoke();
    let result = app.execute(&token, &orchestration, json!({})).await;
    assert_eq!(result["status"], "success", "{result}");
    assert_eq!(dealer.tokens_issued(), 2);
    let execution = result["execution_id"].as_str().expect("id");
    let rows: Value =
        app.get(&token, &format!("/api-calls?execution_id={execution}")).await.json().await.expect("json");
    let mut outcomes: Vec<(String, i64)> = rows["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["url"].as_str().expect("url").to_owned(), r["status_code"].as_i64().unwrap_or(0)))
        .collect();
    outcomes.sort();
    let vehicle = format!("http://{authority}/api/vehicles/1HGCM82633A004352");
    let token_url = format!("http://{authority}/oauth/token");
    assert_eq!(outcomes, [(vehicle.clone(), 200), (vehicle, 401), (token_url, 200)]);

    // No secret or token anywhere in the rows.
    let text = api_call_text(&app, &token).await;
    assert!(!text.contains(CLIENT_SECRET) && !text.contains("tok-"), "{text}");
    other.stop().await.expect("stop");
}

#[tokio::test]
async fn a_refused_token_request_fails_the_step_with_the_reason() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (dealer, authority) = Dealer::start().await;
    let mut auth = oauth(&authority);
    auth["client_secret"] = json!("wrong-secret-1234");
    let (_, orchestration) = setup(&app, &token, &authority, auth).await;
    let result = app.execute(&token, &orchestration, json!({})).await;
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(dealer.tokens_issued(), 1);
    assert!(dealer.api_requests.lock().expect("lock").is_empty(), "nothing went out without a token");
    let rows: Value = app.get(&token, "/api-calls").await.json().await.expect("json");
    let token_row = rows["data"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with("/oauth/token")));
    assert_eq!(token_row.expect("the token request's row")["status_code"], 401);
    let error = result["error"].as_str().expect("error");
    assert!(error.contains("token endpoint answered 401") && error.contains("invalid_client"), "{error}");
    assert!(!api_call_text(&app, &token).await.contains("wrong-secret-1234"));
}

#[tokio::test]
async fn api_keys_and_headers_go_only_to_the_connections_hosts_and_settings_are_checked() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let (dealer, authority) = Dealer::start().await;
    let auth = json!({"type": "api_key", "header": "X-Dealer-Key", "key": "key-7781-abcd"});
    let (connection, orchestration) = setup(&app, &token, &authority, auth).await;
    let result = app.execute(&token, &orchestration, json!({})).await;
    assert_eq!(result["status"], "success", "{result}");
    let seen = dealer.api_requests.lock().expect("lock")[0].clone();
    assert_eq!(seen.get("x-dealer-key").map(String::as_str), Some("key-7781-abcd"));
    assert_eq!(seen.get("subscription-id").map(String::as_str), Some("dealer-42"));
    assert!(!api_call_text(&app, &token).await.contains("key-7781-abcd"));
    let shown: Value = app.get(&token, &format!("/connections/{connection}")).await.json().await.expect("json");
    assert_eq!(shown["auth"], json!({"type": "api_key", "header": "X-Dealer-Key", "key": "****abcd"}));

    // PUT without the key keeps it; moving the base URL needs it again.
    let mut body = json!({"name": "fortellis", "system": "rest", "allowed_hosts": [authority],
                          "auth": {"type": "api_key", "header": "X-Dealer-Key"},
                          "config": {"base_url": format!("http://{authority}/api"),
                                     "operations": {"vehicle": {"method": "GET", "path": "/vehicles/{vin}"}}}});
    let kept = app.put(&token, &format!("/connections/{connection}"), body.clone()).await;
    assert_eq!(kept.status(), StatusCode::OK);
    let kept: Value = kept.json().await.expect("json");
    assert_eq!(kept["auth"]["key"], "****abcd");
    assert_eq!(kept["headers"], json!({"Subscription-Id": "dealer-42"}), "headers a PUT leaves out are kept");
    body["config"]["base_url"] = json!(format!("http://{authority}/other"));
    body.as_object_mut().expect("object").remove("auth");
    let moved = app.put(&token, &format!("/connections/{connection}"), body).await;
    let refused = assert_error(moved, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(detail_paths(&refused), ["auth"]);

    // Bad settings, each at its path; nothing stored.
    let bad = json!({"name": "bad", "system": "rest", "config": {"base_url": "http://127.0.0.1:9/"},
                     "auth": {"type": "oauth2_client_credentials", "token_url": "ftp://x/token", "client_id": "",
                              "client_secret": "s", "scopes": ["two words"]},
                     "headers": {"Host": "evil.example", "X-Ok": "fine"}});
    let refused =
        assert_error(app.post(&token, "/connections", bad).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
            .await;
    assert_eq!(detail_paths(&refused), ["auth.token_url", "auth.client_id", "auth.scopes", "headers.Host"]);
    let unknown = json!({"name": "bad", "system": "rest", "config": {"base_url": "http://127.0.0.1:9/"},
                         "auth": {"type": "kerberos"}});
    let refused = assert_error(
        app.post(&token, "/connections", unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&refused), ["auth"]);
    // The dms connector authenticates itself with an API key: no host-managed bearer for it.
    let dms = json!({"name": "dms", "system": "dms", "config": {"base_url": "http://127.0.0.1:9/"},
                     "credentials": {"api_key": "k"}, "auth": {"type": "bearer", "token": "t"}});
    let refused =
        assert_error(app.post(&token, "/connections", dms).await, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR")
            .await;
    assert_eq!(detail_paths(&refused), ["auth.type"]);
    let listed: Value = app.get(&token, "/connections").await.json().await.expect("json");
    assert_eq!(listed["pagination"]["total"], 1);
}
