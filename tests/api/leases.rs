//! Fenced leases: a node that stalls past its lease (a VM pause, a long GC, a slow disk) finds
//! its executions taken over when it wakes, and writes nothing more of them: no step result,
//! no API-call row, no finish, no release, and no further step. PostgreSQL only: it takes two
//! processes on one database.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::fresh_database;
use crate::mock::MockServer;
use crate::process::{Server, cluster};

/// `DIBOP_LEASE_MS` of both nodes.
const LEASE_MS: &str = "3000";
/// Executions each node runs at once; exactly twice this many are started, so each node holds
/// this many and nothing waits in the queue.
const IN_FLIGHT: usize = 6;

fn vin(i: usize) -> String {
    format!("STALL{i:04}")
}

/// Waits until `done()` holds, at most `within`.
async fn until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stalled_past_its_lease_writes_nothing_more_and_runs_no_further_step() {
    let Some(database) = fresh_database().await else {
        eprintln!("skipped: two nodes need PostgreSQL (set DIBOP_TEST_DATABASE_URL)");
        return;
    };
    let mock = MockServer::start().await;
    let in_flight = IN_FLIGHT.to_string();
    let extra = [
        ("DIBOP_LEASE_MS", LEASE_MS),
        ("DIBOP_MAX_IN_FLIGHT", in_flight.as_str()),
        ("DIBOP_ENTERPRISE_SLOTS", in_flight.as_str()),
    ];
    let (nodes, client, token) = cluster(&database, 2, &extra).await;
    let (nodes, _dirs): (Vec<Server>, Vec<_>) = nodes.into_iter().unzip();
    nodes[0]
        .create(
            &client,
            &token,
            "/connections",
            json!({"name": "dms", "system": "rest", "allowed_hosts": [mock.authority],
                   "resilience": {"rate_limit": {"requests_per_minute": 100000}},
                   "config": {"base_url": format!("{}/dms", mock.base),
                              "operations": {"quick": {"method": "GET", "path": "/inflight/{key}"},
                                             "gated": {"method": "GET", "path": "/gate/{key}"}}}}),
        )
        .await;
    let call = |name: &str, operation: &str, key: &str| {
        json!({"name": name, "type": "api_call", "connection": "dms", "operation": operation,
               "parameters": {"key": key}, "timeout_ms": 60000})
    };
    let orchestration = nodes[0]
        .create(
            &client,
            &token,
            "/orchestrations",
            json!({"name": "Stall", "parameters": [{"name": "vin", "type": "string", "required": true}],
                   "steps": [call("first", "quick", "${parameters.vin}-1"), call("gated", "gated", "${parameters.vin}"),
                             call("third", "quick", "${parameters.vin}-3"), call("fourth", "quick", "${parameters.vin}-4")]}),
        )
        .await;

    // Each node takes its share and waits at the gate with it.
    let mut ids = Vec::new();
    for i in 0..2 * IN_FLIGHT {
        let (_, body) = nodes[i % 2]
            .execute(&client, &token, &orchestration, &json!({"parameters": {"vin": vin(i)}, "async": true}))
            .await;
        ids.push(body["execution_id"].as_str().unwrap_or_else(|| panic!("not accepted: {body}")).to_owned());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while mock.count("/dms/gate/") < 2 * IN_FLIGHT {
        if Instant::now() > deadline {
            let detail = client.get(nodes[0].api(&format!("/executions/{}", ids[0]))).bearer_auth(&token).send().await;
            let detail: Value = detail.expect("get").json().await.expect("json");
            panic!("not at the gate: {:?}; first execution: {detail}", mock.arrivals("/"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mock.count("/dms/gate/"), 2 * IN_FLIGHT, "each node holds its share, no more");

    // The first node stalls with its executions in flight. The gate opens for the second
    // node's own executions (the stalled node's answers wait in its sockets), then closes.
    nodes[0].signal("STOP");
    mock.open_gate();
    until("the second node's executions past the gate", Duration::from_secs(30), || mock.count("-3") == IN_FLIGHT)
        .await;
    mock.close_gate();
    // Past the lease, the second node takes the stalled node's executions over and calls the
    // step that was in flight again, which waits at the closed gate.
    until("the stalled node's executions taken over", Duration::from_secs(30), || {
        mock.count("/dms/gate/") == 3 * IN_FLIGHT
    })
    .await;

    // The stalled node wakes with the answers of its gated calls waiting for it. Its lease is
    // gone: it records nothing and calls no further step (the third step of its executions
    // stays uncalled while the new owner waits at the gate).
    nodes[0].signal("CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mock.count("-3"), IN_FLIGHT, "a node that lost its leases ran a further step");
    mock.open_gate();

    // Every execution ends successfully with each step recorded once.
    for id in &ids {
        let detail = nodes[1].wait_ended(&client, &token, id, Duration::from_secs(60)).await;
        assert_eq!(detail["status"], "success", "{detail}");
        let steps: Vec<&str> =
            detail["steps"].as_array().expect("steps").iter().map(|s| s["name"].as_str().unwrap_or("?")).collect();
        assert_eq!(steps, ["first", "gated", "third", "fourth"], "each step recorded once: {detail}");
    }

    // Only the step in flight at the stall ran twice, for the stalled node's executions.
    let mut calls: HashMap<String, usize> = HashMap::new();
    for (path, _) in mock.arrivals("/dms/") {
        *calls.entry(path).or_default() += 1;
    }
    let mut repeated = 0;
    for i in 0..2 * IN_FLIGHT {
        for suffix in ["-1", "-3", "-4"] {
            let path = format!("/dms/inflight/{}{suffix}", vin(i));
            assert_eq!(calls.get(&path), Some(&1), "{path}");
        }
        match calls.get(&format!("/dms/gate/{}", vin(i))) {
            Some(1) => {}
            Some(2) => repeated += 1,
            n => panic!("{}: the gated step ran {n:?} times", vin(i)),
        }
    }
    assert_eq!(repeated, IN_FLIGHT, "the stalled node's executions, each once more");

    // The API-call log holds the calls the owners recorded: none from the stalled run.
    for id in &ids {
        let page = nodes[1].get_json(&client, &token, &format!("/api-calls?execution_id={id}&page_size=50")).await;
        let total = page["pagination"]["total"].as_u64();
        assert_eq!(total, Some(4), "{id}: one row per recorded step: {page}");
    }
}
