use super::*;
use crate::{NewEnterprise, NewUser, is_lease_lost};

/// A store with one enterprise, one orchestration and one queued execution: SQLite in a
/// temporary directory, or a fresh PostgreSQL database when `DIBOP_TEST_DATABASE_URL` is set.
async fn queued(name: &str) -> (Store, std::path::PathBuf, String, String) {
    let (store, dir) = crate::testing::fresh_store(crate::testing::postgres().as_deref(), name).await;
    let (enterprise, _) = store
        .create_enterprise_with_admin(
            NewEnterprise { name: "E".into(), slug: format!("e-{name}"), timezone: "UTC".into() },
            NewUser {
                email: format!("{name}@e.example"),
                name: "A".into(),
                role: dibop_core::Role::EnterpriseAdmin,
                platform_access: false,
                password_hash: "x".into(),
            },
        )
        .await
        .expect("enterprise");
    let orchestration =
        store.create_orchestration(&enterprise.id, "O", "active", "{}", None).await.expect("orchestration");
    let new = NewExecution {
        orchestration_id: orchestration.id.clone(),
        orchestration_version: 1,
        triggered_by: "api".into(),
        parameters: "{}".into(),
        idempotency_key: None,
        steps_total: 2,
        parent: None,
        traceparent: None,
    };
    let Inserted::Created(execution) =
        store.enqueue_execution(&enterprise.id, new, QueueBound::Enforced).await.expect("queued")
    else {
        panic!("not created")
    };
    (store, dir, enterprise.id, execution.id)
}

fn step(position: i64) -> StepResultRow {
    StepResultRow {
        position,
        name: format!("s{position}"),
        kind: StepKind::Transform,
        status: StepStatus::Success,
        system: None,
        operation: None,
        input: None,
        output: Some("{}".into()),
        error: None,
        attempts: 1,
        started_at: now_ms(),
        duration_ms: 1,
        detail: None,
    }
}

fn call(enterprise_id: &str, execution_id: &str) -> ApiCallRecord {
    let origin = crate::CallOrigin {
        enterprise_id: enterprise_id.into(),
        system: "rest".into(),
        connection_id: None,
        connection: None,
        orchestration_id: None,
        execution_id: Some(execution_id.into()),
        step: Some("s0".into()),
        trace_id: None,
    };
    ApiCallRecord::start(origin, "GET".into(), "http://127.0.0.1/x".into())
}

async fn count(store: &Store, table: &str, id: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE execution_id = $1"))
        .bind(id)
        .fetch_one(&store.pool)
        .await
        .expect("count")
}

/// A node that stalled past its lease (here: claimed with a lease that is already over,
/// then claimed again by another node) can neither record, park, finish nor release the
/// execution: each write is refused as a lost lease with nothing of it stored, the
/// heartbeat reports the lease lost, and the new owner's writes go through.
#[tokio::test]
async fn writes_under_a_lease_another_claim_took_are_refused_with_nothing_written() {
    let (store, dir, enterprise, id) = queued("fence").await;
    let stale = store.claim_execution("node-a", -1, &[], &[]).await.expect("claim").expect("claimed");
    let stale = stale.lease().expect("leased");
    assert_eq!(stale.epoch, 1);
    let fresh = store.claim_execution("node-b", 30_000, &[], &[]).await.expect("claim").expect("expired lease");
    let fresh = fresh.lease().expect("leased");
    assert_eq!((fresh.owner.as_str(), fresh.epoch), ("node-b", 2));

    let refused = store.record_step(&stale, &step(0), &[call(&enterprise, &id)], 1, None, false).await;
    assert!(refused.as_ref().is_err_and(is_lease_lost), "{:?}", refused.err());
    let finished = Finish { status: ExecutionStatus::Success, output: None, error: None, code: None };
    assert!(store.finish_execution(&stale, finished).await.is_err_and(|e| is_lease_lost(&e)));
    assert!(store.release_execution(&stale, 0).await.is_err_and(|e| is_lease_lost(&e)));
    let parked = store.park_in_body(&stale, &[], &[call(&enterprise, &id)], 1_000).await;
    assert!(parked.is_err_and(|e| is_lease_lost(&e)));
    assert_eq!(count(&store, "step_results", &id).await, 0);
    assert_eq!(count(&store, "api_calls", &id).await, 0);
    let lost = store.renew_leases("node-a", &[(id.clone(), 1)], 30_000).await.expect("renew");
    assert_eq!(lost, [(id.clone(), 1)]);
    assert!(store.renew_leases("node-b", &[(id.clone(), 2)], 30_000).await.expect("renew").is_empty());

    let row = store.get_execution(&enterprise, &id).await.expect("read").expect("row");
    assert_eq!((row.status.as_str(), row.lease_owner.as_deref(), row.steps_completed), ("running", Some("node-b"), 0));
    store.record_step(&fresh, &step(0), &[call(&enterprise, &id)], 1, None, false).await.expect("owner records");
    let finished = Finish { status: ExecutionStatus::Success, output: Some("{}".into()), error: None, code: None };
    store.record_step(&fresh, &step(1), &[], 2, Some(finished), false).await.expect("owner finishes");
    let row = store.get_execution(&enterprise, &id).await.expect("read").expect("row");
    assert_eq!((row.status.as_str(), row.steps_completed), ("success", 2));
    assert_eq!(count(&store, "api_calls", &id).await, 1);
    // A finished execution has no lease to write under any more.
    assert!(store.release_execution(&fresh, 0).await.is_err_and(|e| is_lease_lost(&e)));
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A failed step of `position` and how it pauses its execution.
fn failed(position: i64) -> (StepResultRow, Finish) {
    let mut row = step(position);
    row.status = StepStatus::Failed;
    row.output = None;
    row.error = Some("upstream_error: 503".into());
    (row, Finish::paused(format!("step s{position} failed: upstream_error: 503")))
}

/// A paused execution holds no lease and has not ended; no claim takes it (nor a retry),
/// and a resume queues it again once, here skipping the step that paused it.
#[tokio::test]
async fn a_paused_execution_is_claimed_by_no_one_until_it_is_resumed() {
    let (store, dir, enterprise, id) = queued("pause").await;
    let claimed = store.claim_execution("node-a", 30_000, &[], &[]).await.expect("claim").expect("claimed");
    let lease = claimed.lease().expect("leased");
    store.record_step(&lease, &step(0), &[], 1, None, false).await.expect("first step");
    let (row, pause) = failed(1);
    let recorded = store.record_step(&lease, &row, &[], 2, Some(pause), false).await.expect("pauses");
    assert!(recorded.ended.is_none(), "a pause is no end");
    let row = store.get_execution(&enterprise, &id).await.expect("read").expect("row");
    assert_eq!(
        (row.status.as_str(), row.lease_owner.as_deref(), row.finished_at, row.steps_completed),
        ("paused", None, None, 2)
    );
    assert_eq!((row.error_code.as_deref(), row.is_final()), (Some("STEP_FAILED"), false));
    assert!(store.claim_execution("node-b", -1, &[], &[]).await.expect("claim").is_none());
    assert!(store.claim_execution_by_id(&id, "node-b", 30_000).await.expect("claim").is_none());
    assert!(store.retry_execution(&enterprise, &id).await.expect("retry").is_none(), "retries take ended ones");
    assert!(store.resume_execution("another", &id, None, None).await.expect("resume").is_none());

    let resumed = store
        .resume_execution(&enterprise, &id, Some(r#"{"vin":"x"}"#), Some(r#"{"price":1}"#))
        .await
        .expect("resume")
        .expect("it was paused");
    assert_eq!(
        (resumed.status.as_str(), resumed.steps_completed, resumed.steps_succeeded, resumed.parameters.as_str()),
        ("queued", 2, 2, r#"{"vin":"x"}"#)
    );
    assert!(resumed.error.is_none() && resumed.error_code.is_none());
    assert!(store.resume_execution(&enterprise, &id, None, None).await.expect("resume").is_none(), "only once");
    let results = store.step_results(&id).await.expect("results");
    assert_eq!(
        (results[1].status.as_str(), results[1].output.as_deref(), results[1].error.as_deref()),
        ("success", Some(r#"{"price":1}"#), None)
    );
    let again = store.claim_execution("node-b", 30_000, &[], &[]).await.expect("claim").expect("queued again");
    assert_eq!(again.id, id);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A cancellation asked for while the step that pauses ran ends the execution instead, and
/// a paused execution is cancelled at once.
#[tokio::test]
async fn a_cancelled_execution_does_not_pause_and_a_paused_one_cancels_at_once() {
    let (store, dir, enterprise, id) = queued("pausecancel").await;
    let lease = store.claim_execution("node-a", 30_000, &[], &[]).await.expect("claim").expect("claimed");
    let lease = lease.lease().expect("leased");
    store.cancel_execution(&enterprise, &id).await.expect("cancel asked");
    let (row, pause) = failed(0);
    let recorded = store.record_step(&lease, &row, &[], 1, Some(pause), false).await.expect("ends");
    assert_eq!(recorded.ended.map(|e| e.status), Some(ExecutionStatus::Cancelled));
    let row = store.get_execution(&enterprise, &id).await.expect("read").expect("row");
    assert_eq!((row.status.as_str(), row.error_code.as_deref()), ("cancelled", Some("CANCELLED")));
    assert!(row.finished_at.is_some());

    let (store2, dir2, enterprise, id) = queued("pausedcancel").await;
    let lease = store2.claim_execution("node-a", 30_000, &[], &[]).await.expect("claim").expect("claimed");
    let (row, pause) = failed(0);
    store2.record_step(&lease.lease().expect("leased"), &row, &[], 1, Some(pause), false).await.expect("pauses");
    let row = store2.cancel_execution(&enterprise, &id).await.expect("cancel").expect("row");
    assert_eq!((row.status.as_str(), row.error.as_deref()), ("cancelled", Some("cancelled while paused")));
    assert!(store2.resume_execution(&enterprise, &id, None, None).await.expect("resume").is_none());
    for (store, dir) in [(store, dir), (store2, dir2)] {
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Only the leases a node names are renewed: an execution whose run ended without handing
/// it back (the release failed too) expires and is claimed again.
#[tokio::test]
async fn a_lease_the_node_no_longer_names_expires_and_is_claimed_again() {
    let (store, dir, _enterprise, id) = queued("expire").await;
    let first = store.claim_execution("node-a", 300, &[], &[]).await.expect("claim").expect("claimed");
    // The heartbeat of node-a runs, but this execution is no longer in its set.
    assert!(store.renew_leases("node-a", &[], 300).await.expect("renew").is_empty());
    assert!(store.claim_execution("node-a", 300, &[], &[]).await.expect("claim").is_none(), "held until it expires");
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    let again = store.claim_execution("node-a", 300, &[], &[]).await.expect("claim").expect("expired: claimable");
    assert_eq!((again.id.as_str(), again.lease_epoch), (id.as_str(), first.lease_epoch + 1));
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The queue bound holds under concurrent admissions (on PostgreSQL through the advisory
/// lock of `admission_room`, on SQLite through the one writer): exactly the free places are taken, the others
/// write nothing; a sub-orchestration's child is inserted past it.
#[tokio::test]
async fn concurrent_admissions_take_exactly_the_free_places_of_the_queue() {
    let (store, dir, enterprise, id) = queued("bound").await;
    let orchestration = store.get_execution(&enterprise, &id).await.expect("read").expect("row").orchestration_id;
    sqlx::query("UPDATE enterprises SET max_queued_executions = 4 WHERE id = $1")
        .bind(&enterprise)
        .execute(&store.pool)
        .await
        .expect("bound");
    let new = |parent: Option<(String, i64)>| NewExecution {
        orchestration_id: orchestration.clone(),
        orchestration_version: 1,
        triggered_by: "api".into(),
        parameters: "{}".into(),
        idempotency_key: None,
        steps_total: 1,
        parent,
        traceparent: None,
    };
    // On PostgreSQL through as many connections as tries, so that the admissions race.
    let wide = match store.backend {
        Backend::Postgres => {
            let url = store.pool.connect_options().database_url.to_string();
            Some(Store::connect(Some(&url.into()), &dir, 16, false).await.expect("connects"))
        }
        Backend::Sqlite => None,
    };
    let racing = wide.as_ref().unwrap_or(&store);
    let tries = (0..16).map(|_| racing.enqueue_execution(&enterprise, new(None), QueueBound::Enforced));
    let outcomes = futures_util::future::join_all(tries).await;
    let created = outcomes.iter().filter(|o| matches!(o, Ok(Inserted::Created(_)))).count();
    let full = outcomes.iter().filter(|o| matches!(o, Ok(Inserted::QueueFull { bound: 4 }))).count();
    let errors: Vec<String> = outcomes.iter().filter_map(|o| o.as_ref().err().map(ToString::to_string)).collect();
    assert_eq!((created, full), (3, 13), "one was queued before; errors: {errors:?}");
    assert_eq!(store.queued_executions(Some(&enterprise)).await.expect("count"), 4);
    // A child of an admitted execution is never refused.
    let child = store.enqueue_execution(&enterprise, new(Some((id.clone(), 0))), QueueBound::Exempt).await;
    assert!(matches!(child, Ok(Inserted::Created(_))), "{child:?}");
    assert_eq!(store.queued_executions(Some(&enterprise)).await.expect("count"), 5);
    if let Some(wide) = wide {
        wide.close().await;
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Admission's count reads an index of queued executions, not the table.
#[tokio::test]
async fn the_queue_count_reads_the_index_of_queued_executions() {
    let (store, dir, enterprise, _id) = queued("plan").await;
    let count = "SELECT COUNT(*) FROM executions q WHERE q.enterprise_id = $1 AND q.status = 'queued'";
    let plan: Vec<String> = match store.backend {
        Backend::Sqlite => {
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {count}"))
                .bind(&enterprise)
                .fetch_all(&store.pool)
                .await
                .expect("plan");
            rows.iter().map(|r| r.try_get::<String, _>(3).expect("detail")).collect()
        }
        Backend::Postgres => {
            // A table this small is read whole unless the planner is told not to.
            let mut tx = store.pool.begin().await.expect("begin");
            sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.expect("set");
            let rows =
                sqlx::query(&format!("EXPLAIN {count}")).bind(&enterprise).fetch_all(&mut *tx).await.expect("plan");
            rows.iter().map(|r| r.try_get::<String, _>(0).expect("line")).collect()
        }
    };
    // An index of the queued executions answers it (the partial one, or the one by status,
    // whichever the planner prefers), never a scan of the table.
    let indexed =
        |line: &String| line.contains("executions_queued_by_enterprise") || line.contains("executions_by_status");
    assert!(plan.iter().any(indexed), "{plan:?}");
    assert!(!plan.iter().any(|line| line.contains("Seq Scan") || line.trim() == "SCAN q"), "{plan:?}");
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
