//! `dibop demo`: the server with a sandbox dealer system on loopback (a vPIC-style VIN decoder
//! and a DMS), the connections and the "Vehicle lookup" orchestration of the SPEC, one execution
//! with its output and a trace summary, then it keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::config::Config;

/// The VIN the demo looks up.
pub const DEMO_VIN: &str = "1HGCM82633A004352";

/// The sandbox dealer system: vPIC's DecodeVinValues answer format and a small DMS.
fn sandbox() -> axum::Router {
    axum::Router::new()
        .route(
            "/vpic/vehicles/DecodeVinValues/{vin}",
            get(|Path(vin): Path<String>| async move {
                Json(json!({"Count": 1, "Message": "Results returned successfully", "SearchCriteria": format!("VIN:{vin}"),
                    "Results": [{"VIN": vin, "Make": "HONDA", "Model": "Accord", "ModelYear": "2003", "Trim": "EX",
                                 "BodyClass": "Coupe", "FuelTypePrimary": "Gasoline", "EngineModel": "J30A4", "ErrorCode": "0"}]}))
            }),
        )
        .route("/vpic/vehicles/GetMakesForVehicleType/car", get(|| async { Json(json!({"Count": 1, "Results": [{"MakeName": "HONDA"}]})) }))
        .route(
            "/dms/vehicles/{vin}",
            get(|Path(vin): Path<String>| async move {
                if vin == DEMO_VIN {
                    (StatusCode::OK, Json(json!({"vin": vin, "stock_number": "STK-1001", "make": "Honda", "model": "Accord",
                                                 "year": 2003, "status": "in_stock", "list_price": 5990.0, "currency": "CAD"})))
                } else {
                    (StatusCode::NOT_FOUND, Json(json!({"error": "not in stock"})))
                }
            }),
        )
        .route("/dms/health", get(|| async { Json(json!({"status": "ok"})) }))
}

/// The SPEC's "Vehicle lookup" orchestration (`examples/vehicle-lookup.json`).
pub const VEHICLE_LOOKUP: &str = include_str!("../../examples/vehicle-lookup.json");
/// The ADF lead intake orchestration (`examples/adf-lead.json`): an XML lead posted to a
/// webhook becomes a canonical lead.
pub const ADF_LEAD: &str = include_str!("../../examples/adf-lead.json");

/// Runs the demo until `shutdown` resolves.
pub async fn run(mut config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    config.allow_private_networks = true;
    let email = config.admin_email.clone().unwrap_or_else(|| crate::bootstrap::DEFAULT_ADMIN_EMAIL.into());
    let password = match &config.admin_password {
        Some(p) => p.expose_secret().to_owned(),
        None => rand::thread_rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect(),
    };
    config.admin_email = Some(email.clone());
    config.admin_password = Some(SecretString::from(password.clone()));

    let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sandbox_address: SocketAddr = sandbox_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(sandbox_listener, sandbox()).await });

    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(crate::serve(listener, config, shutdown));

    let api = format!("{base}/api/v1");
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login: Value = client
        .post(format!("{api}/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?
        .error_for_status()
        .context("logging in (a reused data directory keeps its first admin password)")?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("no token")?.to_owned();
    let post = |path: &str, body: Value| client.post(format!("{api}{path}")).bearer_auth(&token).json(&body).send();
    let sandbox = format!("http://{sandbox_address}");
    let connections = [
        json!({"name": "vpic", "system": "vpic", "config": {"base_url": format!("{sandbox}/vpic")}, "allowed_hosts": [sandbox_address.to_string()]}),
        json!({"name": "dms", "system": "rest", "allowed_hosts": [sandbox_address.to_string()],
               "config": {"base_url": format!("{sandbox}/dms"), "operations": {"get_vehicle": {"method": "GET", "path": "/vehicles/{vin}"}}}}),
    ];
    for connection in connections {
        let response = post("/connections", connection).await?;
        anyhow::ensure!(
            response.status().is_success() || response.status() == StatusCode::CONFLICT,
            "creating a connection: {}",
            response.text().await?
        );
    }
    let orchestration: Value =
        post("/orchestrations", serde_json::from_str(VEHICLE_LOOKUP)?).await?.error_for_status()?.json().await?;
    let id = orchestration["id"].as_str().context("no orchestration id")?;
    let result: Value =
        post(&format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": DEMO_VIN}})).await?.json().await?;
    let execution = result["execution_id"].as_str().unwrap_or_default();
    let trace: Value =
        client.get(format!("{api}/executions/{execution}/trace")).bearer_auth(&token).send().await?.json().await?;

    println!("\nDIBOP demo: orchestration \"Vehicle lookup\" ran for VIN {DEMO_VIN}: {}", result["status"]);
    println!("output: {}", serde_json::to_string_pretty(&result["output"])?);
    println!("trace:");
    for span in trace["spans"].as_array().into_iter().flatten() {
        let kind = span["kind"].as_str().unwrap_or_default();
        if ["execution", "step", "http", "plugin.instantiate"].contains(&kind) {
            let indent = match kind {
                "execution" => "  ",
                "step" => "    ",
                _ => "      ",
            };
            println!(
                "{indent}{kind:<18} {:<60} {:>8.2} ms  {}",
                span["name"].as_str().unwrap_or_default(),
                span["duration_ms"].as_f64().unwrap_or(0.0),
                span["status"].as_str().unwrap_or_default()
            );
        }
    }
    println!("\nConsole: {base}/console/");
    println!("API:     {api}   (Swagger UI: {api}/docs)");
    println!("Login:   {email} / {password}");
    println!(
        "Execute: curl -X POST {api}/orchestrations/{id}/execute -H 'Authorization: Bearer <token>' -H 'Content-Type: application/json' -d '{{\"parameters\":{{\"vin\":\"{DEMO_VIN}\"}}}}'"
    );
    println!("Serving until Ctrl-C.\n");
    server.await?
}
