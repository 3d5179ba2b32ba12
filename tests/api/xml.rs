//! XML through HTTP: a dealer system posts an ADF lead as XML to a webhook and the example
//! orchestration writes a canonical lead; the `rest` connector sends an XML body from a
//! template (values escaped) and reads an XML answer as JSON; bad XML is refused.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

const ADF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<?ADF VERSION "1.0"?>
<adf>
  <prospect status="new">
    <id sequence="1" source="dealer-site">L-1001</id>
    <requestdate>2026-11-30T10:15:00-05:00</requestdate>
    <vehicle interest="buy" status="new"><year>2024</year><make>Honda</make><model>Accord</model></vehicle>
    <customer>
      <contact primarycontact="1">
        <name part="first">Ana</name><name part="last">Silva</name>
        <email>ana.silva@example.com</email>
        <phone type="voice" time="day">+1-416-555-0101</phone>
      </contact>
    </customer>
    <provider><name part="full">Main Street Motors Website</name></provider>
  </prospect>
</adf>"#;

async fn post_xml(app: &TestApp, path: &str, secret: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", "application/xml")
        .header("x-webhook-secret", secret)
        .body(body.to_owned())
        .send()
        .await
        .expect("post")
}

#[tokio::test]
async fn an_adf_lead_posted_as_xml_becomes_a_canonical_lead() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let definition: Value = serde_json::from_str(dibop::demo::ADF_LEAD).expect("example JSON");
    let orchestration = app.create_orchestration(&token, definition).await;
    let webhook: Value = app
        .post(
            &token,
            "/webhooks",
            json!({"name": "adf", "orchestration_id": orchestration, "parameters": {"prospect": "${body.adf.prospect}"}}),
        )
        .await
        .json()
        .await
        .expect("json");
    let path = format!("/webhooks/{}", webhook["id"].as_str().expect("id"));
    let secret = webhook["secret"].as_str().expect("secret");

    let response = post_xml(&app, &path, secret, ADF).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let triggered: Value = response.json().await.expect("json");
    let done = app.wait_finished(&token, triggered["execution_id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(
        done["parameters"]["prospect"]["id"],
        json!({"@sequence": "1", "@source": "dealer-site", "#text": "L-1001"})
    );
    assert_eq!(done["parameters"]["prospect"]["customer"]["contact"]["name"][1]["#text"], "Silva");

    let lead: Value = app.get(&token, "/canonical/lead").await.json().await.expect("json");
    let record = &lead["data"][0];
    assert_eq!(
        record["data"],
        json!({"lead_id": "L-1001", "source": "Main Street Motors Website", "customer_name": "Ana Silva",
               "email": "ana.silva@example.com", "phone": "+1-416-555-0101", "vehicle_interest": "2024 Honda Accord",
               "status": "new"}),
        "{lead}"
    );

    // Not a document, or one that declares entities: 400, nothing queued.
    for bad in ["<adf><prospect>", "not xml", r#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><adf>&e;</adf>"#]
    {
        assert_error(post_xml(&app, &path, secret, bad).await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    }
    let executions: Value = app.get(&token, "/executions").await.json().await.expect("json");
    assert_eq!(executions["pagination"]["total"], 1);
}

/// A STAR-style endpoint: remembers the request's content type and body, answers XML.
#[derive(Clone, Default)]
struct Star {
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn star(State(star): State<Star>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    star.seen.lock().expect("lock").push((content_type, body));
    let answer = r#"<?xml version="1.0"?><AcknowledgeSalesLead releaseID="5.4.4"><Lead id="L-9"><Status>accepted</Status></Lead><Lead id="L-10"><Status>duplicate</Status></Lead></AcknowledgeSalesLead>"#;
    (StatusCode::OK, [("content-type", "application/xml; charset=utf-8")], answer)
}

#[tokio::test]
async fn the_rest_connector_sends_xml_from_a_template_and_reads_xml_answers() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let upstream = Star::default();
    let router = Router::new().route("/star/leads", post(star)).with_state(upstream.clone());
    let authority = crate::helpers::serve(router).await;
    app.create_connection(
        &token,
        json!({"name": "star", "system": "rest", "allowed_hosts": [authority],
               "config": {"base_url": format!("http://{authority}/star"),
                          "operations": {"send_lead": {"method": "POST", "path": "/leads", "content_type": "application/xml",
                                                       "body": "<ProcessSalesLead><Name>${input.name}</Name><VIN>${input.vin}</VIN></ProcessSalesLead>"}}}}),
    )
    .await;
    let orchestration = app
        .create_orchestration(
            &token,
            json!({"name": "Send lead", "parameters": [{"name": "name", "type": "string", "required": true}],
                   "steps": [{"name": "send", "type": "api_call", "connection": "star", "operation": "send_lead",
                              "parameters": {"name": "${parameters.name}", "vin": "1HGCM82633A004352"}}],
                   "output": {"ack": "${send.response}"}}),
        )
        .await;
    let result = app.execute(&token, &orchestration, json!({"parameters": {"name": "Tom & <Jerry>"}})).await;
    assert_eq!(result["status"], "success", "{result}");
    let (content_type, body) = upstream.seen.lock().expect("lock")[0].clone();
    assert_eq!(content_type, "application/xml");
    assert_eq!(
        body,
        "<ProcessSalesLead><Name>Tom &amp; &lt;Jerry&gt;</Name><VIN>1HGCM82633A004352</VIN></ProcessSalesLead>"
    );
    assert_eq!(
        result["output"]["ack"],
        json!({"AcknowledgeSalesLead": {"@releaseID": "5.4.4", "Lead": [
            {"@id": "L-9", "Status": "accepted"}, {"@id": "L-10", "Status": "duplicate"}]}})
    );
}
