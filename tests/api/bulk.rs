//! Bulk work inside one execution, through HTTP: a `for_each` over the 10,000 items of one
//! upstream answer of about 20 MB completes, and its trace counts the items instead of holding
//! a span per item; a `for_each` against a throttled system drains at the limit with each item
//! called once; and one whose node is killed half-way resumes on a new process without calling
//! again the items it had finished (they were committed as it went).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::call_log::CallLog;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, fresh_database, unlimited};
use crate::process::{SECRET_KEY, Server, free_port};

/// Vehicles in the large answer, and the filler that brings each to about 2 KB.
const VEHICLES: usize = 10_000;
const FILLER: usize = 1_950;

/// A system with a large stock list (`GET /stock`, about 20 MB) and a per-vehicle call
/// (`GET /v/{id}`) that notes how often each vehicle came and when.
type Dealer = CallLog;

/// The dealer, serving on loopback, and its authority.
async fn start_dealer() -> (Dealer, String) {
    let dealer = Dealer::default();
    let stock: Vec<Value> = (0..VEHICLES)
        .map(|i| json!({"id": format!("v{i}"), "vin": format!("VIN{i:014}"), "notes": "n".repeat(FILLER)}))
        .collect();
    let stock = Arc::new(json!({"vehicles": stock}).to_string());
    let app = Router::new()
        .route("/stock", get(move || async move { ([("content-type", "application/json")], stock.to_string()) }))
        .route("/v/{id}", get(vehicle))
        .with_state(dealer.clone());
    (dealer, crate::helpers::serve(app).await)
}

async fn vehicle(State(dealer): State<Dealer>, Path(id): Path<String>) -> axum::Json<Value> {
    dealer.record(id.clone());
    axum::Json(json!({"id": id, "priced": true}))
}

/// A `rest` connection to the dealer with `rate_limit`, memory for the large answer.
fn connection(authority: &str, rate_limit: &Value) -> Value {
    json!({"name": "dealer", "system": "rest", "allowed_hosts": [authority], "memory_limit_mb": 256,
           "resilience": {"rate_limit": rate_limit},
           "config": {"base_url": format!("http://{authority}"),
                      "operations": {"stock": {"method": "GET", "path": "/stock"},
                                     "price": {"method": "GET", "path": "/v/{id}"}}}})
}

/// Fetches the stock list, then runs `body` for the vehicles `items` selects of it (`""`: all),
/// `concurrency` at a time.
fn pricing(items: &str, concurrency: u32, body: &Value) -> Value {
    json!({"name": "Price the stock", "steps": [
        {"name": "fetch", "type": "api_call", "connection": "dealer", "operation": "stock", "parameters": {}},
        {"name": "each", "type": "for_each", "items": format!("${{fetch.response.vehicles{items}}}"),
         "concurrency": concurrency, "steps": [body]}],
        "output": {"rows": "${each}"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_for_each_over_ten_thousand_items_of_a_twenty_megabyte_answer_completes_and_its_trace_counts_them() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.put(&token, "/settings", unlimited()).await.status(), StatusCode::OK);
    let (_dealer, authority) = start_dealer().await;
    app.create_connection(&token, connection(&authority, &Value::Null)).await;
    let row = json!({"name": "row", "type": "transform", "transform": "map",
                     "mapping": {"n": "${index}", "vin": "${item.vin}", "size": "${fetch.status_code}"}});
    let id = app.create_orchestration(&token, pricing("", 20, &row)).await;
    let started = Instant::now();
    let run = app.run_to_end(&token, &id, json!({"async": true})).await;
    let summary = run["error"].clone();
    assert_eq!(run["status"], "success", "{summary} after {:?}", started.elapsed());
    // The answer was larger than the 4 MiB a step's output used to be bounded by.
    let fetched = run["steps"][0]["output"]["response"]["vehicles"].as_array().expect("stock").len();
    assert_eq!(fetched, VEHICLES);
    let rows = run["output"]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), VEHICLES);
    assert_eq!(rows[9_999], json!({"n": 9_999, "vin": "VIN00000000009999", "size": 200}));
    // Every item's body read the large answer in place (`${fetch...}` resolved in each).
    assert!(rows.iter().all(|r| r["size"] == 200));
    let execution_id = run["id"].as_str().expect("id");
    // Its output (about 500 KB) is kept by reference: lists give its size, not the value.
    let listed: Value = app.get(&token, &format!("/orchestrations/{id}/executions")).await.json().await.expect("list");
    let entry = &listed["data"][0];
    assert_eq!((&entry["id"], &entry["output"]), (&run["id"], &Value::Null), "{entry}");
    let bytes = entry["output_bytes"].as_u64().expect("output_bytes");
    assert_eq!(bytes, u64::try_from(run["output"].to_string().len()).expect("len"));
    let trace: Value = app.get(&token, &format!("/executions/{execution_id}/trace")).await.json().await.expect("trace");
    let spans = trace["spans"].as_array().expect("spans");
    assert!(spans.len() < 100, "{} spans: the trace holds a few items, not all", spans.len());
    let each = spans.iter().find(|s| s["kind"] == "step" && s["name"] == "each").expect("the for_each's span");
    assert_eq!(each["attributes"]["items"], VEHICLES);
    assert_eq!(each["attributes"]["outcomes"], json!({"success": VEHICLES}));
    assert_eq!(each["attributes"]["items_left_out"], VEHICLES - 10);
    let items =
        spans.iter().filter(|s| s["kind"] == "step" && s["name"].as_str().is_some_and(|n| n.starts_with("each[")));
    assert_eq!(items.count(), 10, "the first ten items keep their spans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_for_each_against_a_throttled_system_drains_at_the_limit_calling_each_item_once() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    assert_eq!(app.put(&token, "/settings", unlimited()).await.status(), StatusCode::OK);
    let (dealer, authority) = start_dealer().await;
    app.create_connection(&token, connection(&authority, &json!({"requests_per_second": 50}))).await;
    let price = json!({"name": "price", "type": "api_call", "connection": "dealer", "operation": "price",
                       "parameters": {"id": "${item.id}"}});
    let id = app.create_orchestration(&token, pricing("[0:200]", 20, &price)).await;
    let run = app.run_to_end(&token, &id, json!({"async": true})).await;
    assert_eq!(run["status"], "success", "{}", run["error"]);
    let times = dealer.times_each();
    assert_eq!(times.len(), 200, "every item under 200 was priced");
    assert!(times.values().all(|n| *n == 1), "an item was called twice: {times:?}");
    // No second of the clock sees more than 50: when the twenty bodies wake at a window's start
    // they take turns on the guest cores, and a request that reaches the network after its
    // window takes the next permit at that moment (or is not sent) instead of landing late.
    let busiest = dealer.busiest_second(&[]);
    assert!(busiest <= 50, "{busiest} calls in one second of the clock");
    // The stock call took a permit too: 201 calls at 50 a second take about four seconds.
    let started = run["started_at"].as_str().expect("started");
    let finished = run["finished_at"].as_str().expect("finished");
    let span = chrono::DateTime::parse_from_rfc3339(finished).expect("t")
        - chrono::DateTime::parse_from_rfc3339(started).expect("t");
    assert!(span.num_milliseconds() >= 3_000, "{span:?}: the limit was not kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_for_each_whose_node_is_killed_half_way_does_not_call_its_finished_items_again() {
    const ITEMS: usize = 300;
    let database = fresh_database().await;
    let dir = tempfile::tempdir().expect("data dir");
    let variables = [("DIBOP_SECRET_KEY", SECRET_KEY)];
    let client = reqwest::Client::new();
    let mut first = Server::start(dir.path(), database.as_deref(), free_port(), &variables);
    first.wait_ready(&client).await;
    let token = first.token(&client, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let response = client.put(first.api("/settings")).bearer_auth(&token).json(&unlimited()).send().await;
    assert_eq!(response.expect("settings").status(), StatusCode::OK);
    let (dealer, authority) = start_dealer().await;
    first.create(&client, &token, "/connections", connection(&authority, &json!({"requests_per_second": 30}))).await;
    let price = json!({"name": "price", "type": "api_call", "connection": "dealer", "operation": "price",
                       "parameters": {"id": "${item.id}"}});
    let items = format!("[0:{ITEMS}]");
    let orchestration = first.create(&client, &token, "/orchestrations", pricing(&items, 20, &price)).await;
    let (_, started) = first.execute(&client, &token, &orchestration, &json!({"async": true})).await;
    let execution = started["execution_id"].as_str().expect("execution id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dealer.count() < 150 {
        assert!(Instant::now() < deadline, "the for_each did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();
    // What the dead node committed is what must not run again: the items whose body step it kept.
    let kept = kept_items(dir.path(), database.as_deref(), &execution).await;
    assert!(kept.len() >= 20, "only {} of the {} items called before the kill were kept", kept.len(), dealer.count());
    // A new process on the same database takes the execution over once its lease expires.
    let second = Server::start(dir.path(), database.as_deref(), free_port(), &variables);
    second.wait_ready(&client).await;
    let run = second.wait_ended(&client, &token, &execution, Duration::from_secs(90)).await;
    assert_eq!(run["status"], "success", "{}", run["error"]);
    let times = dealer.times_each();
    assert_eq!(times.len(), ITEMS, "every item was priced");
    let again: Vec<&String> = kept.iter().filter(|id| times[id.as_str()] > 1).collect();
    assert!(again.is_empty(), "{again:?} of the {} items kept before the kill were called again", kept.len());
    // Those finished after the last commit, and those in flight (20), may be called once more.
    assert!(times.values().all(|n| *n <= 2), "{times:?}");
    let rows = run["output"]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), ITEMS);
    assert_eq!(rows[0]["response"]["id"], "v0", "{}", rows[0]);
    assert_eq!(rows[ITEMS - 1]["response"]["id"], format!("v{}", ITEMS - 1));
}

/// The vehicles (`v12`) whose `price` step the execution kept in the database, read after its
/// node died.
async fn kept_items(data_dir: &std::path::Path, database: Option<&str>, execution: &str) -> Vec<String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let url = crate::helpers::database_of(data_dir, database);
    let mut db = sqlx::AnyConnection::connect(&url).await.expect("open the database");
    let labels: Vec<String> = sqlx::query_scalar(
        "SELECT label FROM body_steps WHERE execution_id = $1 AND status = 'success' AND label LIKE 'each[%].price'",
    )
    .bind(execution)
    .fetch_all(&mut db)
    .await
    .expect("kept body steps");
    labels
        .iter()
        .map(|label| {
            let index = label.trim_start_matches("each[").trim_end_matches("].price");
            format!("v{index}")
        })
        .collect()
}
