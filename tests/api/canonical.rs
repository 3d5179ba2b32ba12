//! The canonical data model through HTTP: domains, schema validation, natural keys, filters,
//! PII masking for viewers, and lineage from a `canonical_upsert` step.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, assert_error, detail_paths, merged};

const VIN: &str = "1HGCM82633A004352";

#[tokio::test]
async fn records_are_validated_unique_filterable_and_masked_for_viewers() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;

    let domains: Value = app.get(&token, "/canonical").await.json().await.expect("json");
    let domains = domains.as_array().expect("list");
    assert_eq!(domains.len(), 22);
    let vehicle = domains.iter().find(|d| d["domain"] == "vehicle").expect("vehicle");
    assert_eq!(vehicle["natural_key"], "vin");
    assert_eq!(vehicle["records"], 0);
    let names: Vec<&str> =
        vehicle["fields"].as_array().expect("fields").iter().filter_map(|f| f["name"].as_str()).collect();
    for field in ["vin", "make", "model", "year", "mileage_km", "stock_number", "list_price", "currency"] {
        assert!(names.contains(&field), "vehicle has {field}");
    }
    let customer = domains.iter().find(|d| d["domain"] == "customer").expect("customer");
    let email = customer["fields"].as_array().expect("fields").iter().find(|f| f["name"] == "email").expect("email");
    assert_eq!(email["pii"], "pii");

    // Every bad field is listed by path; nothing is stored.
    let bad = json!({"vin": "SHORT", "year": "old", "mileage_km": -5, "currency": "euro", "colour": "red"});
    let body = assert_error(
        app.post(&token, "/canonical/vehicle", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["colour", "currency", "mileage_km", "vin", "year"]);
    let body = assert_error(
        app.post(&token, "/canonical/vehicle", json!({"make": "HONDA"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["vin"]);
    assert_error(app.post(&token, "/canonical/spaceship", json!({})).await, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    let honda = json!({"vin": VIN, "make": "HONDA", "model": "Accord", "year": 2003, "status": "in_stock"});
    let created = app.post(&token, "/canonical/vehicle", honda.clone()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["data"], honda);
    assert_eq!(created["lineage"]["source"], "api");
    assert!(created["lineage"]["created_by"].is_string());
    assert_error(app.post(&token, "/canonical/vehicle", honda).await, StatusCode::CONFLICT, "CONFLICT").await;
    let ford = json!({"vin": "1FTFW1ET5DFC10312", "make": "FORD", "model": "F-150", "year": 2013});
    app.post(&token, "/canonical/vehicle", ford).await;

    // Filters on field values; unknown fields are refused.
    let hondas: Value = app.get(&token, "/canonical/vehicle?make=HONDA").await.json().await.expect("json");
    assert_eq!(hondas["pagination"]["total"], 1);
    assert_eq!(hondas["data"][0]["data"]["vin"], VIN);
    let by_year: Value = app.get(&token, "/canonical/vehicle?year=2013").await.json().await.expect("json");
    assert_eq!(by_year["data"][0]["data"]["make"], "FORD");
    let all: Value = app.get(&token, "/canonical/vehicle?page_size=1").await.json().await.expect("json");
    assert_eq!(all["pagination"]["total"], 2);
    assert_eq!(all["data"].as_array().map(Vec::len), Some(1));
    assert_error(app.get(&token, "/canonical/vehicle?colour=red").await, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;

    // PUT validates the same way and keeps natural keys unique.
    let id = created["id"].as_str().expect("id");
    let updated: Value = app
        .put(&token, &format!("/canonical/vehicle/{id}"), json!({"vin": VIN, "make": "HONDA", "mileage_km": 182000}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(updated["data"]["mileage_km"], 182000);
    let clash = app.put(&token, &format!("/canonical/vehicle/{id}"), json!({"vin": "1FTFW1ET5DFC10312"})).await;
    assert_error(clash, StatusCode::CONFLICT, "CONFLICT").await;

    // Customers: viewers see personal fields masked.
    let person = json!({"customer_id": "C-1", "customer_name": "Ada Lovelace", "email": "ada@example.com",
                        "city": "London", "customer_type": "individual"});
    assert_eq!(app.post(&token, "/canonical/customer", person).await.status(), StatusCode::CREATED);
    app.create_user(&token, "viewer@example.com", "viewer").await;
    let viewer = app.token("viewer@example.com", ADMIN_PASSWORD).await;
    let seen: Value = app.get(&viewer, "/canonical/customer").await.json().await.expect("json");
    let data = &seen["data"][0]["data"];
    assert_eq!(
        (&data["customer_name"], &data["email"], &data["city"]),
        (&json!("****"), &json!("****"), &json!("London"))
    );
    let admin_sees: Value = app.get(&token, "/canonical/customer").await.json().await.expect("json");
    assert_eq!(admin_sees["data"][0]["data"]["email"], "ada@example.com");
    let write = app.post(&viewer, "/canonical/customer", json!({"customer_id": "C-2"})).await;
    assert_eq!(write.status(), StatusCode::FORBIDDEN);

    let domains: Value = app.get(&token, "/canonical").await.json().await.expect("json");
    let count = |name: &str| {
        domains.as_array().expect("list").iter().find(|d| d["domain"] == name).expect("d")["records"].clone()
    };
    assert_eq!((count("vehicle"), count("customer")), (json!(2), json!(1)));
}

#[tokio::test]
async fn canonical_upsert_writes_by_natural_key_with_the_execution_as_lineage() {
    let app = TestApp::spawn().await;
    let token = app.admin_token().await;
    let def = json!({"name": "Store vehicle",
        "parameters": [{"name": "vin", "type": "string", "required": true}, {"name": "km", "type": "integer", "required": true}],
        "steps": [{"name": "save", "type": "canonical_upsert", "domain": "vehicle",
                   "mapping": {"vin": "${parameters.vin}", "make": "HONDA", "mileage_km": "${parameters.km}"}}]});
    let created: Value = app.post(&token, "/orchestrations", def).await.json().await.expect("json");
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}"));
    let run = |km: i64, vin: &'static str| {
        let app = &app;
        let token = token.clone();
        let id = id.to_owned();
        async move {
            app.post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": vin, "km": km}}))
                .await
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let first = run(1000, VIN).await;
    assert_eq!(first["status"], "success", "{first}");
    let record_id = first["output"]["id"].as_str().expect("record id").to_owned();
    let second = run(2000, VIN).await;
    assert_eq!(second["output"]["id"], record_id.as_str(), "the same natural key updates the same record");
    let record: Value = app.get(&token, &format!("/canonical/vehicle/{record_id}")).await.json().await.expect("json");
    assert_eq!(record["data"]["mileage_km"], 2000);
    assert_eq!(record["lineage"]["source"], "execution");
    assert_eq!(record["lineage"]["execution_id"], second["execution_id"]);

    // A record the schema refuses fails the step with the field errors.
    let bad = run(-1, "BAD").await;
    assert_eq!(bad["status"], "failed");
    let error = bad["error"].as_str().expect("error");
    assert!(
        error.contains("invalid vehicle record") && error.contains("mileage_km") && error.contains("vin"),
        "{error}"
    );

    let unknown = json!({"name": "Nowhere", "steps": [{"name": "save", "type": "canonical_upsert", "domain": "spaceship", "mapping": {}}]});
    let body = assert_error(
        app.post(&token, "/orchestrations", unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["steps[0].domain"]);
}

#[tokio::test]
async fn an_upsert_names_the_connection_and_system_its_data_came_from() {
    let app = TestApp::spawn().await;
    let mock = crate::mock::MockServer::start().await;
    let token = app.admin_token().await;
    app.create_connection(&token, merged(mock.vpic(), json!({"name": "decoder"}))).await;
    let def = json!({"name": "Decode and store", "parameters": [{"name": "vin", "type": "string", "required": true}],
        "steps": [
            {"name": "decode", "type": "api_call", "connection": "decoder", "operation": "decode_vin",
             "parameters": {"vin": "${parameters.vin}"}},
            {"name": "save", "type": "canonical_upsert", "domain": "vehicle", "source": "decode",
             "mapping": {"vin": "${decode.response.vin}", "make": "${decode.response.make}", "year": "${decode.response.year}"}}]});
    let created: Value = app.post(&token, "/orchestrations", def).await.json().await.expect("json");
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}"));
    let result: Value = app
        .post(&token, &format!("/orchestrations/{id}/execute"), json!({"parameters": {"vin": VIN}}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(result["status"], "success", "{result}");
    let record_id = result["output"]["id"].as_str().expect("id");
    let record: Value = app.get(&token, &format!("/canonical/vehicle/{record_id}")).await.json().await.expect("json");
    assert_eq!(record["data"], json!({"vin": VIN, "make": "HONDA", "year": 2003}));
    let lineage = &record["lineage"];
    assert_eq!((&lineage["connection"], &lineage["system"]), (&json!("decoder"), &json!("vpic")));
    assert_eq!(lineage["execution_id"], result["execution_id"]);

    let bad = json!({"name": "Bad source", "steps": [{"name": "save", "type": "canonical_upsert", "domain": "vehicle",
        "source": "later", "mapping": {"vin": VIN}}]});
    let body = assert_error(
        app.post(&token, "/orchestrations", bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(detail_paths(&body), ["steps[0].source"]);
}
