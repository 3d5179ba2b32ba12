//! A mock of the external systems on loopback: a vPIC-style VIN decoder and a DMS, with slow,
//! failing and oversized variants. It counts requests and remembers their headers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One request the mock answered: its path and headers, and when it arrived.
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub at: Instant,
}

#[derive(Default)]
pub struct Seen {
    pub requests: Vec<Request>,
}

#[derive(Clone, Default)]
pub struct Mock {
    pub seen: Arc<Mutex<Seen>>,
    /// Requests to `/dms/inflight/...` being served now, and the most at once.
    pub inflight: Arc<Mutex<(usize, usize)>>,
    /// `/dms/gate/...` requests wait until this turns true.
    pub gate: Arc<tokio::sync::watch::Sender<bool>>,
}

pub struct MockServer {
    pub base: String,
    pub authority: String,
    pub mock: Mock,
}

impl MockServer {
    pub async fn start() -> Self {
        let mock = Mock::default();
        let app = Router::new()
            .route("/vpic/vehicles/DecodeVinValues/{vin}", get(decode))
            .route("/vpic/vehicles/GetMakesForVehicleType/car", get(makes))
            .route("/slow/vpic/vehicles/GetMakesForVehicleType/car", get(slow))
            .route("/slow/vpic/vehicles/DecodeVinValues/{vin}", get(slow))
            .route("/down/vpic/vehicles/GetMakesForVehicleType/car", get(down))
            .route("/big", get(big))
            .route("/oauth/token", get(oauth_token))
            .route("/dms/vehicles/{vin}", get(dms_vehicle))
            .route("/dms/customers", post(dms_create_customer))
            .route("/dms/health", get(makes))
            .route("/flaky/status", get(flaky))
            .route("/dms/slow-customers", post(slow_create_customer))
            .route("/dms/inflight/{vin}", get(inflight))
            .route("/dms/gate/{vin}", get(gated))
            .route("/shop/items/{id}", get(shop_item))
            .route("/shop/health", get(makes))
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let authority = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base: format!("http://{authority}"), authority, mock }
    }

    /// The SPEC's `vpic` connection to this mock: the one fixture of it; a test that needs another
    /// name or field lays it over this one with [`crate::helpers::merged`].
    pub fn vpic(&self) -> Value {
        json!({"name": "vpic", "system": "vpic", "config": {"base_url": format!("{}/vpic", self.base)},
               "allowed_hosts": [self.authority]})
    }

    /// The SPEC's generic REST `dms` connection to this mock (its API key, `get_vehicle`).
    pub fn dms(&self) -> Value {
        json!({"name": "dms", "system": "rest",
               "config": {"base_url": format!("{}/dms", self.base), "auth": {"type": "api_key", "header": "X-Api-Key"},
                          "operations": {"get_vehicle": {"method": "GET", "path": "/vehicles/{vin}"}}},
               "credentials": {"api_key": "dms-key-123456"}, "allowed_hosts": [self.authority]})
    }

    /// `pick` of each request whose path contains `fragment`, in arrival order.
    fn matching<T>(&self, fragment: &str, pick: impl Fn(&Request) -> T) -> Vec<T> {
        let seen = self.mock.seen.lock().expect("lock");
        seen.requests.iter().filter(|r| r.path.contains(fragment)).map(pick).collect()
    }

    /// Requests whose path contains `fragment`.
    pub fn count(&self, fragment: &str) -> usize {
        self.matching(fragment, |_| ()).len()
    }

    /// Lets every `/dms/gate/...` request, waiting or to come, answer.
    pub fn open_gate(&self) {
        self.mock.gate.send_replace(true);
    }

    /// Makes `/dms/gate/...` requests wait again (those already answered stay answered).
    pub fn close_gate(&self) {
        self.mock.gate.send_replace(false);
    }

    /// The most `/dms/inflight/...` requests served at once.
    pub fn max_inflight(&self) -> usize {
        self.mock.inflight.lock().expect("lock").1
    }

    pub fn headers_of(&self, fragment: &str) -> Vec<HeaderMap> {
        self.matching(fragment, |r| r.headers.clone())
    }

    /// The paths containing `fragment` that were requested, each with when it arrived.
    pub fn arrivals(&self, fragment: &str) -> Vec<(String, Instant)> {
        self.matching(fragment, |r| (r.path.clone(), r.at))
    }
}

fn remember(mock: &Mock, path: String, headers: &HeaderMap) {
    mock.seen.lock().expect("lock").requests.push(Request { path, headers: headers.clone(), at: Instant::now() });
}

/// The answer format of the public NHTSA vPIC DecodeVinValues endpoint.
async fn decode(State(mock): State<Mock>, Path(vin): Path<String>, headers: HeaderMap) -> Json<Value> {
    remember(&mock, format!("/vpic/vehicles/DecodeVinValues/{vin}"), &headers);
    Json(json!({
        "Count": 1,
        "Message": "Results returned successfully. NOTE: Any missing decoded values should be interpreted as NHTSA does not have data on the specific variable.",
        "SearchCriteria": format!("VIN:{vin}"),
        "Results": [{
            "Make": "HONDA", "Model": "Accord", "ModelYear": "2003", "Trim": "EX-V6", "BodyClass": "Coupe",
            "FuelTypePrimary": "Gasoline", "EngineModel": "J30A4", "EngineConfiguration": "V-Shaped",
            "EngineCylinders": "6", "DisplacementL": "3.0", "ErrorCode": "0", "VIN": vin
        }]
    }))
}

async fn makes(State(mock): State<Mock>, headers: HeaderMap) -> Json<Value> {
    remember(&mock, "/vpic/vehicles/GetMakesForVehicleType/car".into(), &headers);
    Json(json!({"Count": 1, "Results": [{"MakeId": 474, "MakeName": "HONDA"}]}))
}

async fn slow(State(mock): State<Mock>, headers: HeaderMap) -> Json<Value> {
    remember(&mock, "/slow".into(), &headers);
    tokio::time::sleep(Duration::from_secs(3)).await;
    Json(json!({"Count": 0, "Results": []}))
}

/// Takes 4 s to create a customer (a step that is in flight when a node dies).
async fn slow_create_customer(State(mock): State<Mock>, headers: HeaderMap) -> impl IntoResponse {
    remember(&mock, "/dms/slow-customers".into(), &headers);
    tokio::time::sleep(Duration::from_secs(4)).await;
    (StatusCode::CREATED, Json(json!({"customer_id": "C-7"})))
}

/// 503 for the first two requests, then 200.
async fn flaky(State(mock): State<Mock>, headers: HeaderMap) -> impl IntoResponse {
    remember(&mock, "/flaky/status".into(), &headers);
    let seen = mock.seen.lock().expect("lock").requests.iter().filter(|r| r.path == "/flaky/status").count();
    if seen <= 2 {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "busy"})))
    } else {
        (StatusCode::OK, Json(json!({"ok": true, "attempt": seen})))
    }
}

/// Answers once the test opens the gate ([`MockServer::open_gate`]).
async fn gated(State(mock): State<Mock>, Path(vin): Path<String>, headers: HeaderMap) -> Json<Value> {
    remember(&mock, format!("/dms/gate/{vin}"), &headers);
    let mut open = mock.gate.subscribe();
    let _ = open.wait_for(|open| *open).await;
    Json(json!({"vin": vin, "checked": true}))
}

/// Takes 150 ms and tracks how many such requests overlap.
async fn inflight(State(mock): State<Mock>, Path(vin): Path<String>, headers: HeaderMap) -> Json<Value> {
    remember(&mock, format!("/dms/inflight/{vin}"), &headers);
    {
        let mut counts = mock.inflight.lock().expect("lock");
        counts.0 += 1;
        counts.1 = counts.1.max(counts.0);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    mock.inflight.lock().expect("lock").0 -= 1;
    Json(json!({"vin": vin, "checked": true}))
}

async fn down() -> impl IntoResponse {
    (StatusCode::SERVICE_UNAVAILABLE, "maintenance")
}

/// 40 MiB: more than a plugin may read of one answer (32 MiB).
async fn big() -> impl IntoResponse {
    "x".repeat(40 << 20)
}

async fn dms_vehicle(State(mock): State<Mock>, Path(vin): Path<String>, headers: HeaderMap) -> impl IntoResponse {
    remember(&mock, format!("/dms/vehicles/{vin}"), &headers);
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("dms-key-123456") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad key"})));
    }
    if vin != "1HGCM82633A004352" {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such vehicle"})));
    }
    (
        StatusCode::OK,
        Json(json!({"vin": vin, "stock_number": "STK-1001", "make": "Honda", "model": "Accord", "year": 2003,
        "status": "in_stock", "list_price": 5990.0, "currency": "CAD", "mileage_km": 182000})),
    )
}

async fn dms_create_customer(State(mock): State<Mock>, headers: HeaderMap, body: String) -> impl IntoResponse {
    remember(&mock, "/dms/customers".into(), &headers);
    let mut customer: Value = serde_json::from_str(&body).unwrap_or(json!({}));
    customer["customer_id"] = json!("C-42");
    (StatusCode::CREATED, Json(customer))
}

/// The API the connector templates (`dibop connector new`) read: `GET /shop/items/{id}` with
/// the key `shop-key-123456`.
async fn shop_item(State(mock): State<Mock>, Path(id): Path<String>, headers: HeaderMap) -> impl IntoResponse {
    remember(&mock, format!("/shop/items/{id}"), &headers);
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("shop-key-123456") {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad key"})));
    }
    if id != "42" {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such item"})));
    }
    (StatusCode::OK, Json(json!({"id": id, "name": "Wheel", "price": 120.5})))
}

/// An OAuth token endpoint's answer (the token must never be readable in API-call logs).
async fn oauth_token() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"access_token": "tok-abcdef123456", "token_type": "bearer", "expires_in": 3600}))
}
