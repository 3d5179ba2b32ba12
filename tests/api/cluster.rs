//! Three `dibop serve` processes with their own data directories on one PostgreSQL database,
//! one of them killed with SIGKILL in the middle of a thousand executions: every accepted
//! execution ends once and successfully, no committed step is called again, the dead node's
//! executions move to the others within the lease time, and what the nodes share (plugin bytes,
//! rate-limit counters, schedule slots) works across them. PostgreSQL only: a SQLite database
//! belongs to one process.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, fresh_database, guest, merged};
use crate::mock::MockServer;
use crate::process::{Server, cluster};

const EXECUTIONS: usize = 1_000;
/// `DIBOP_LEASE_MS` of every node ([`Server::start`]).
const LEASE: Duration = Duration::from_secs(2);
/// Executions a node runs at once (all of one enterprise here): with a thousand queued, the
/// queue in the database feeds all three, and the killed node runs exactly this many. All of
/// them wait at one connection's gate, which holds at most its share of the live calls.
const IN_FLIGHT: usize = 32;
const _: () = assert!(IN_FLIGHT <= dibop::plugins::MAX_LIVE_CALLS_PER_CONNECTION);

fn vin(i: usize) -> String {
    format!("CLUSTER{i:010}")
}

/// Sends `count` requests built by `request(i)`, `concurrency` at a time; answers their statuses
/// and bodies in order.
async fn send_all<F>(count: usize, concurrency: usize, request: F) -> Vec<(StatusCode, Value)>
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (request, next) = (request.clone(), next.clone());
        senders.spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count {
                    return answers;
                }
                let response = request(i).send().await.expect("request");
                let status = response.status();
                answers.push((i, status, response.json::<Value>().await.unwrap_or(Value::Null)));
            }
        });
    }
    let mut answers = senders.join_all().await.into_iter().flatten().collect::<Vec<_>>();
    answers.sort_by_key(|(i, _, _)| *i);
    answers.into_iter().map(|(_, status, body)| (status, body)).collect()
}

/// Waits until the next minute's rate-limit window is more than 15 s away, so that a burst
/// counted by the test falls into one window.
async fn early_in_a_minute() {
    let second = chrono::Utc::now().timestamp() % 60;
    if second > 45 {
        tokio::time::sleep(Duration::from_secs((61 - second) as u64)).await;
    }
}

// Several threads: the mock answers hundreds of requests at once while the test watches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_database_run_a_thousand_executions_through_the_death_of_one() {
    let Some(database) = fresh_database().await else {
        eprintln!("skipped: several nodes need PostgreSQL (set DIBOP_TEST_DATABASE_URL)");
        return;
    };
    let mock = MockServer::start().await;
    let in_flight = IN_FLIGHT.to_string();
    let extra = [
        ("DIBOP_MIN_CRON_INTERVAL_SECS", "1"),
        ("DIBOP_MAX_IN_FLIGHT", in_flight.as_str()),
        ("DIBOP_ENTERPRISE_SLOTS", in_flight.as_str()),
    ];
    let (nodes, client, token) = cluster(&database, 3, &extra).await;
    let (mut nodes, _dirs): (Vec<Server>, Vec<_>) = nodes.into_iter().unzip();

    // An upload on the first node; its connection's credentials are sealed by the second.
    let upload = client
        .post(nodes[0].api("/plugins"))
        .bearer_auth(&token)
        .header("content-type", "application/wasm")
        .body(guest("hostile"))
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), StatusCode::CREATED);
    for connection in [
        merged(mock.vpic(), json!({"resilience": {"rate_limit": {"requests_per_minute": 100000}}})),
        json!({"name": "dms", "system": "rest", "allowed_hosts": [mock.authority],
               // A thousand executions in well under a minute, on purpose.
               "resilience": {"rate_limit": {"requests_per_minute": 100000}},
               "config": {"base_url": format!("{}/dms", mock.base),
                          "operations": {"stock": {"method": "GET", "path": "/gate/{vin}"}}}}),
        json!({"name": "hostile", "system": "hostile", "credentials": {"api_key": "k-1"},
               "resilience": {"rate_limit": {"requests_per_minute": 100000}}}),
    ] {
        let response =
            client.post(nodes[1].api("/connections")).bearer_auth(&token).json(&connection).send().await.expect("post");
        assert_eq!(response.status(), StatusCode::CREATED, "{connection}");
    }
    let orchestration = nodes[2]
        .create(
            &client,
            &token,
            "/orchestrations",
            json!({"name": "Stock check", "parameters": [{"name": "vin", "type": "string", "required": true}],
            "steps": [
                {"name": "decode", "type": "api_call", "connection": "vpic", "operation": "decode_vin",
                 "parameters": {"vin": "${parameters.vin}"}},
                {"name": "echo", "type": "api_call", "connection": "hostile", "operation": "echo",
                 "parameters": {"make": "${decode.response.make}"}},
                {"name": "stock", "type": "api_call", "connection": "dms", "operation": "stock",
                 "parameters": {"vin": "${parameters.vin}"}}],
            "output": {"make": "${echo.response.make}", "checked": "${stock.response.checked}"}}),
        )
        .await;

    // A schedule every second, running on all three nodes while they work.
    let schedule = nodes[0]
        .create(
            &client,
            &token,
            "/orchestrations",
            json!({"name": "Every second", "trigger": {"type": "schedule", "cron": "* * * * * *"},
            "steps": [{"name": "tick", "type": "transform", "transform": "map", "mapping": {"tick": true}}]}),
        )
        .await;
    let schedule_from = Instant::now();

    // A thousand executions, accepted by the three nodes in turn.
    let urls: Vec<String> = nodes.iter().map(|n| n.api(&format!("/orchestrations/{orchestration}/execute"))).collect();
    let (submit_client, submit_token) = (client.clone(), token.clone());
    let accepted = send_all(EXECUTIONS, 24, move |i| {
        submit_client
            .post(&urls[i % 3])
            .bearer_auth(&submit_token)
            .json(&json!({"parameters": {"vin": vin(i)}, "async": true}))
    })
    .await;
    let ids: Vec<String> = accepted
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
            body["execution_id"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
        })
        .collect();

    // The last step waits at the DMS's gate: once every node holds all the executions it may
    // run there, the third node dies with its share in flight, and the gate opens.
    let deadline = Instant::now() + Duration::from_secs(120);
    while mock.count("/dms/gate/") < 3 * IN_FLIGHT && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.count("/dms/gate/"), 3 * IN_FLIGHT, "each node runs its share, no more");
    nodes[2].kill();
    let killed_at = Instant::now();
    mock.open_gate();

    // Every accepted execution ends, successfully.
    let succeeded = format!("/orchestrations/{orchestration}/executions?status=success&page_size=1");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let page = nodes[0].get_json(&client, &token, &succeeded).await;
        let total = page["pagination"]["total"].as_u64().unwrap_or_default();
        if total as usize == EXECUTIONS {
            break;
        }
        assert!(Instant::now() < deadline, "only {total} of {EXECUTIONS} executions succeeded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (detail_client, detail_token, survivors) =
        (client.clone(), token.clone(), [nodes[0].api("/executions/"), nodes[1].api("/executions/")]);
    let detail_ids = ids.clone();
    let details = send_all(EXECUTIONS, 16, move |i| {
        detail_client.get(format!("{}{}", survivors[i % 2], detail_ids[i])).bearer_auth(&detail_token)
    })
    .await;
    for (i, (status, detail)) in details.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "{detail}");
        assert_eq!(detail["status"], "success", "{detail}");
        assert_eq!(detail["output"], json!({"make": "HONDA", "checked": true}), "{detail}");
        let steps: Vec<&str> =
            detail["steps"].as_array().expect("steps").iter().map(|s| s["name"].as_str().unwrap_or("?")).collect();
        assert_eq!(steps, ["decode", "echo", "stock"], "each step recorded once: {detail}");
        assert_eq!(detail["parameters"]["vin"], vin(i), "{detail}");
    }

    // No committed step was called again: only the gated step of the executions the killed
    // node held ran twice, the second time after the kill, within the lease time (plus the
    // claim and the call).
    let mut calls: HashMap<String, Vec<Instant>> = HashMap::new();
    for (path, at) in
        mock.arrivals("/vpic/vehicles/DecodeVinValues/CLUSTER").into_iter().chain(mock.arrivals("/dms/gate/"))
    {
        calls.entry(path).or_default().push(at);
    }
    let mut repeated = 0;
    for i in 0..EXECUTIONS {
        let decode = format!("/vpic/vehicles/DecodeVinValues/{}", vin(i));
        assert_eq!(calls.get(&decode).map_or(0, Vec::len), 1, "{decode}: the first step ran once");
        let gate = format!("/dms/gate/{}", vin(i));
        match calls.get(&gate).map(Vec::as_slice).unwrap_or_default() {
            [_] => {}
            [first, second] => {
                repeated += 1;
                assert!(*first < killed_at && *second > killed_at, "{gate}: called twice, not across the kill");
                let after = *second - killed_at;
                assert!(after < LEASE + Duration::from_secs(10), "{gate}: resumed {after:?} after the kill");
            }
            times => panic!("{gate} called {} times", times.len()),
        }
    }
    assert_eq!(repeated, IN_FLIGHT, "the killed node's executions, each once more");

    // The schedule fired once per second, not once per node per second.
    let window = schedule_from.elapsed().as_secs() + 2;
    let page = nodes[1].get_json(&client, &token, &format!("/orchestrations/{schedule}/executions?page_size=1")).await;
    let fired = page["pagination"]["total"].as_u64().unwrap_or_default();
    assert!(fired >= 2 && fired <= window, "fired {fired} times in about {window} s");

    // Rate limits count across the nodes: another enterprise's 60 executions a minute, asked
    // of the two survivors in turn.
    let email = "admin@ratecity.example";
    let response = client
        .post(nodes[0].api("/enterprises"))
        .bearer_auth(&token)
        .json(&json!({"name": "Rate City", "slug": "ratecity", "admin_email": email, "admin_password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("enterprise");
    assert_eq!(response.status(), StatusCode::CREATED);
    let other = nodes[1].token(&client, email, ADMIN_PASSWORD).await;
    let tick = nodes[1]
        .create(&client, &other, "/orchestrations", json!({"name": "Tick", "steps": [{"name": "tick", "type": "transform", "transform": "map", "mapping": {"tick": true}}]}))
        .await;
    early_in_a_minute().await;
    let urls: Vec<String> = nodes[..2].iter().map(|n| n.api(&format!("/orchestrations/{tick}/execute"))).collect();
    let (limit_client, limit_token) = (client.clone(), other.clone());
    let answers = send_all(75, 4, move |i| {
        limit_client.post(&urls[i % 2]).bearer_auth(&limit_token).json(&json!({"async": true}))
    })
    .await;
    let limited = answers.iter().filter(|(status, _)| *status == StatusCode::TOO_MANY_REQUESTS).count();
    let accepted = answers.iter().filter(|(status, _)| *status == StatusCode::ACCEPTED).count();
    assert_eq!((accepted, limited), (60, 15), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status != StatusCode::TOO_MANY_REQUESTS || body["error"]["code"] == "RATE_LIMIT")
    );
}
