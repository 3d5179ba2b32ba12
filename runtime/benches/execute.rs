//! The 3-step "Vehicle lookup" (two `api_call` steps to a loopback mock + a map) through
//! `POST /orchestrations/{id}/execute` on SQLite with all persistence on: sequential latency
//! and throughput at 16 concurrent connections.
//!
//! Run: `cargo bench -p dibop --bench execute`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("dibop-bench-execute-{}", std::process::id()));
    let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_address = mock.local_addr()?.to_string();
    let app = axum::Router::new()
        .route(
            "/vpic/vehicles/DecodeVinValues/{vin}",
            axum::routing::get(|| async {
                axum::Json(json!({"Count": 1, "Message": "ok", "SearchCriteria": "VIN", "Results": [{
                    "Make": "HONDA", "Model": "Accord", "ModelYear": "2003", "ErrorCode": "0"}]}))
            }),
        )
        .route("/dms/vehicles/{vin}", axum::routing::get(|| async { axum::Json(json!({"stock_number": "STK-1001"})) }));
    tokio::spawn(async move { axum::serve(mock, app).await });

    let mut config = dibop::Config::new(&dir);
    config.admin_email = Some("bench@example.com".into());
    config.admin_password = Some("bench-password".to_owned().into());
    config.allow_private_networks = true;
    config.log_format = dibop::config::LogFormat::Json;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}/api/v1", listener.local_addr()?);
    tokio::spawn(dibop::serve(listener, config, std::future::pending()));

    let client = reqwest::Client::new();
    let login: Value = loop {
        if let Ok(r) = client
            .post(format!("{api}/auth/login"))
            .json(&json!({"email": "bench@example.com", "password": "bench-password"}))
            .send()
            .await
        {
            break r.json().await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let token = login["access_token"].as_str().unwrap_or_default().to_owned();
    // Generous limits: the benchmark measures the engine, not the rate limiter.
    client
        .put(format!("{api}/settings"))
        .bearer_auth(&token)
        .json(&json!({"rate_limits": {"api_requests_per_minute": 1_000_000, "executions_per_minute": 1_000_000,
                                      "outbound_requests_per_minute": 1_000_000}}))
        .send()
        .await?
        .error_for_status()?;
    for connection in [
        json!({"name": "vpic", "system": "vpic", "config": {"base_url": format!("http://{mock_address}/vpic")}, "allowed_hosts": [mock_address]}),
        json!({"name": "dms", "system": "rest", "allowed_hosts": [mock_address],
               "config": {"base_url": format!("http://{mock_address}/dms"), "operations": {"get_vehicle": {"method": "GET", "path": "/vehicles/{vin}"}}}}),
    ] {
        client
            .post(format!("{api}/connections"))
            .bearer_auth(&token)
            .json(&connection)
            .send()
            .await?
            .error_for_status()?;
    }
    let definition: Value = serde_json::from_str(dibop::demo::VEHICLE_LOOKUP)?;
    let created: Value =
        client.post(format!("{api}/orchestrations")).bearer_auth(&token).json(&definition).send().await?.json().await?;
    let url = format!("{api}/orchestrations/{}/execute", created["id"].as_str().unwrap_or_default());
    let body = json!({"parameters": {"vin": "1HGCM82633A004352"}});

    let run = move |client: reqwest::Client| {
        let (url, token, body) = (url.clone(), token.clone(), body.clone());
        async move {
            let result: Value = client.post(&url).bearer_auth(&token).json(&body).send().await?.json().await?;
            anyhow::ensure!(result["status"] == "success", "{result}");
            Ok::<_, anyhow::Error>(())
        }
    };
    for _ in 0..50 {
        run(client.clone()).await?;
    }
    let mut samples = Vec::new();
    for _ in 0..500 {
        let started = Instant::now();
        run(client.clone()).await?;
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    println!("sequential: p50 {:.2?}  p90 {:.2?}  p99 {:.2?}  (n={})", at(0.5), at(0.9), at(0.99), samples.len());

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (done, client, run) = (done.clone(), client.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if run(client.clone()).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    println!("16 connections: {:.0} executions/s over 10 s", done.load(Ordering::Relaxed) as f64 / 10.0);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
