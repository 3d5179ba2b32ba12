//! Observability: `/metrics` (Prometheus exposition format, token-protected when configured;
//! naming no tenant's systems when open) and `GET /observability/metrics`.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};
use crate::mock::MockServer;

/// Parses exposition text: every sample line is `name{labels} value`, and every sample belongs to
/// a family declared by a `# TYPE` line. Answers the samples by `name{labels}`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut families = Vec::new();
    let mut samples = HashMap::new();
    assert_eq!(text.lines().last(), Some("# EOF"), "OpenMetrics text ends with # EOF");
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut parts = declaration.split(' ');
            let name = parts.next().expect("family name");
            let kind = parts.next().expect("family type");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            families.push(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().expect("name");
        assert!(
            families.iter().any(|f| name == f || name.strip_prefix(f.as_str()).is_some_and(|s| s.starts_with('_'))),
            "{name} belongs to no declared family"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line}");
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test]
async fn metrics_count_executions_and_api_calls() {
    let app = TestApp::spawn_with(|config| config.metrics_token = Some("metrics-token-1".to_owned().into())).await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    app.create_connection(&token, mock.vpic()).await;
    let def = json!({"name": "Decode", "parameters": [{"name": "vin", "type": "string", "required": true}],
        "steps": [{"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                   "parameters": {"vin": "${parameters.vin}"}}]});
    let created: Value = app.post(&token, "/orchestrations", def).await.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    for vin in ["1HGCM82633A004352", "1HGCM82633A004353", "NOT-A-VIN"] {
        app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": vin}})).await;
    }

    let client = reqwest::Client::new();
    let metrics_url = app.url("/metrics").replace("/api/v1", "");
    assert_error(client.get(&metrics_url).send().await.expect("send"), StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let wrong = client.get(&metrics_url).bearer_auth("nope").send().await.expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let response = client.get(&metrics_url).bearer_auth("metrics-token-1").send().await.expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let samples = parse(&response.text().await.expect("text"));
    let at_least = |series: &str, n: f64| {
        let value = samples.get(series).copied().unwrap_or_else(|| panic!("no {series}"));
        assert!(value >= n, "{series} = {value}, expected at least {n}");
    };
    // Counters are per process (other tests' servers add to them): at least this test's share.
    at_least(r#"dibop_executions_total{status="success"}"#, 2.0);
    at_least(r#"dibop_executions_total{status="failed"}"#, 1.0);
    at_least("dibop_execution_duration_seconds_count", 3.0);
    at_least(r#"dibop_api_calls_total{system="vpic",outcome="success"}"#, 2.0);
    at_least(r#"dibop_api_call_duration_seconds_bucket{le="+Inf",system="vpic"}"#, 2.0);
    at_least("dibop_plugin_instantiate_seconds_count", 1.0);
    at_least("dibop_rate_limit_rejections_total", 0.0);
    at_least("dibop_queue_depth", 0.0);
    at_least("dibop_workers_busy", 0.0);

    // The JSON figures are the enterprise's own, from the database: exact.
    let figures: Value = app.get(&token, "/observability/metrics").await.json().await.expect("json");
    assert_eq!(figures["executions"]["success"], 2, "{figures}");
    assert_eq!(figures["executions"]["failed"], 1);
    assert_eq!(figures["executions"]["queued"], 0);
    assert_eq!(figures["api_calls"], json!([{"system": "vpic", "success": 2, "error": 0, "timeout": 0}]));
    assert_eq!(figures["queue_depth"], 0);
    assert_eq!(figures["workers"], 1024, "the default max_in_flight");
    assert!(figures["plugin_instantiations"].as_u64().expect("n") >= 1);
    assert!(figures["uptime_seconds"].is_u64());
}

#[tokio::test]
async fn sla_figures_are_exact_for_a_known_set_of_executions() {
    let app = TestApp::spawn().await;
    let mock = MockServer::start().await;
    let token = app.admin_token().await;
    app.create_connection(&token, mock.vpic()).await;
    let decode = |name: &str, target: Option<f64>| {
        let mut def = json!({"name": name, "parameters": [{"name": "vin", "type": "string", "required": true}],
            "steps": [{"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                       "parameters": {"vin": "${parameters.vin}"}}]});
        if let Some(target) = target {
            def["sla_target"] = json!(target);
        }
        def
    };
    let mut ids = Vec::new();
    for (name, target) in [("Lenient", Some(70.0)), ("Strict", None)] {
        let created: Value =
            app.post(&token, "/orchestrations", decode(name, target)).await.json().await.expect("json");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let good = "1HGCM82633A004352";
    for (id, vins) in [(&ids[0], vec![good, good, good, "BAD"]), (&ids[1], vec![good, "BAD"])] {
        for vin in vins {
            app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": vin}})).await;
        }
    }

    let report: Value = app.get(&token, "/observability/sla?window=7d").await.json().await.expect("json");
    assert_eq!(report["window"], "7d");
    let of = |id: &str| {
        report["orchestrations"].as_array().expect("list").iter().find(|o| o["id"] == id).cloned().expect("row")
    };
    let lenient = of(&ids[0]);
    assert_eq!(
        (&lenient["executions"], &lenient["successes"], &lenient["failures"], &lenient["success_rate"]),
        (&json!(4), &json!(3), &json!(1), &json!(75.0))
    );
    assert_eq!((&lenient["target"], &lenient["state"]), (&json!(70.0), &json!("green")));
    assert!(lenient["seconds_since_last_failure"].as_i64().expect("seconds") < 60);
    // Percentiles are over the durations the executions report.
    let listed: Value =
        app.get(&token, &format!("/orchestrations/{}/executions", ids[0])).await.json().await.expect("json");
    let mut durations: Vec<i64> =
        listed["data"].as_array().expect("data").iter().map(|e| e["duration_ms"].as_i64().expect("ms")).collect();
    durations.sort_unstable();
    assert_eq!(lenient["duration_p50_ms"], durations[1], "the 2nd of 4 sorted durations");
    assert_eq!(lenient["duration_p99_ms"], durations[3]);

    let strict = of(&ids[1]);
    assert_eq!(
        (&strict["success_rate"], &strict["target"], &strict["state"]),
        (&json!(50.0), &json!(99.0), &json!("red"))
    );

    // The failures were refused by the plugin before any request: the system itself is clean.
    let vpic =
        report["systems"].as_array().expect("systems").iter().find(|s| s["id"] == "vpic").cloned().expect("vpic");
    assert_eq!(
        (&vpic["executions"], &vpic["success_rate"], &vpic["state"]),
        (&json!(4), &json!(100.0), &json!("green"))
    );
    assert_eq!(vpic["seconds_since_last_failure"], Value::Null);

    assert_error(app.get(&token, "/observability/sla?window=soon").await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    let bad = app.post(&token, "/orchestrations", decode("Impossible", Some(120.0))).await;
    assert_error(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
}

#[tokio::test]
async fn the_timeline_counts_finished_executions_per_hour() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let id = app
        .create_orchestration(
            &token,
            json!({"name": "Hourly", "parameters": [{"name": "lead", "type": "object", "required": true}],
                   "steps": [{"name": "route", "type": "transform", "transform": "map",
                              "mapping": {"region": "${parameters.lead.region}"}}]}),
        )
        .await;
    let mut runs = Vec::new();
    for lead in [json!({"region": "east"}), json!({"region": "west"}), json!({})] {
        runs.push(app.execute(&token, &id, json!({"parameters": {"lead": lead}})).await);
    }
    assert_eq!(runs.iter().filter(|r| r["status"] == "success").count(), 2, "{runs:?}");
    // One success finished three hours ago.
    let moved = runs[0]["execution_id"].as_str().expect("id");
    let three_hours_ago = chrono::Utc::now().timestamp_millis() - 3 * 3_600_000;
    app.sql(&format!("UPDATE executions SET finished_at = {three_hours_ago} WHERE id = '{moved}'")).await;

    let timeline: Value = app.get(&token, "/observability/timeline").await.json().await.expect("json");
    assert_eq!(timeline["window"], "24h");
    let buckets = timeline["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 24);
    let start = |b: &Value| chrono::DateTime::parse_from_rfc3339(b["start"].as_str().expect("start")).expect("time");
    for pair in buckets.windows(2) {
        assert_eq!((start(&pair[1]) - start(&pair[0])).num_seconds(), 3600, "consecutive hours");
    }
    let total = |field: &str| buckets.iter().map(|b| b[field].as_i64().expect("count")).sum::<i64>();
    assert_eq!((total("successes"), total("failures")), (2, 1));
    let holding = buckets
        .iter()
        .find(|b| {
            let from = start(b).timestamp_millis();
            (from..from + 3_600_000).contains(&three_hours_ago)
        })
        .expect("the hour three hours ago is in the window");
    assert_eq!(holding["successes"], 1);
    assert_eq!(buckets.last().expect("this hour")["failures"], 1);

    let week: Value = app.get(&token, "/observability/timeline?window=7d").await.json().await.expect("json");
    assert_eq!(week["buckets"].as_array().expect("buckets").len(), 168);
    for bad in ["8d", "soon"] {
        let response = app.get(&token, &format!("/observability/timeline?window={bad}")).await;
        assert_error(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    }
    // Another enterprise's hours are empty.
    let other = app.second_enterprise("hours").await;
    let theirs: Value = app.get(&other, "/observability/timeline").await.json().await.expect("json");
    assert!(theirs["buckets"].as_array().expect("buckets").iter().all(|b| b["successes"] == 0 && b["failures"] == 0));
}

#[tokio::test]
async fn open_metrics_name_no_tenant_systems() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    // One execution of its own, so that the executions family has a value whatever else ran.
    let id = app.create_orchestration(&token, json!({"name": "Counted", "steps": [{"name": "m", "type": "transform", "transform": "map", "mapping": {"ok": true}}]}),
    )
    .await;
    let run = app.execute(&token, &id, json!({"parameters": {}})).await;
    assert_eq!(run["status"], "success", "{run}");
    let metrics = app.client.get(app.url("/metrics").replace("/api/v1", "")).send().await.expect("send");
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("dibop_executions_total{status=\"success\"}"), "{text}");
    assert!(!text.contains("system=\""), "an open /metrics carries no system labels: {text}");
}
