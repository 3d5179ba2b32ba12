//! Claim loops and the lease heartbeat: claim queued executions (fairly across enterprises)
//! while this node has a free slot, run each on its own task in that slot, and keep their
//! leases. An execution waiting on I/O (a plugin's HTTP call, a `wait`, a child) holds only its
//! slot; the node runs up to `max_in_flight` of them and leaves the rest queued in the database.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::node::Running;
use super::runner::lease_lost;
use super::runner::run;
use super::{Stop, schedule};
use crate::Engine;
use dibop_store::{ExecutionRow, Finish};

/// How often idle claim loops look for work they were not woken for (other nodes, expired
/// leases).
const POLL: Duration = Duration::from_millis(500);

/// Claim loops per node: a claim is one short query, so two keep the slots filled while one
/// waits for the database.
const CLAIMERS: usize = 2;

/// Starts the claim loops, the lease heartbeat and the scheduler; they stop when `stop` flips.
/// Aborting a claim loop aborts the executions it started (shutdown does so only after
/// handing them back).
pub fn start(engine: &Engine, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = (0..CLAIMERS).map(|_| tokio::spawn(claimer(engine.clone(), stop.clone()))).collect();
    tasks.push(tokio::spawn(heartbeat(engine.clone(), stop.clone())));
    tasks.push(tokio::spawn(schedule::run(engine.clone(), stop.clone())));
    tasks
}

/// Stops this node's executions at shutdown: lets those running finish until `deadline`, then
/// tells them to stop (each hands itself back to the queue at once, abandoning the step in
/// flight), ends the `tasks` [`start`] began and hands back whatever is left, so another node
/// or a restart resumes them from their last committed step.
pub async fn stop(engine: &Engine, deadline: tokio::time::Instant, tasks: Vec<tokio::task::JoinHandle<()>>) {
    let node = &engine.node;
    while !node.idle() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !node.idle() {
        tracing::warn!("executions still running after the shutdown grace period; handing them back to the queue");
        node.stop_all(Stop::Shutdown);
        let give_up = tokio::time::Instant::now() + Duration::from_secs(2);
        while !node.idle() && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    match engine.store.release_all(&node.node_id).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(executions = n, "handed executions back to the queue"),
        Err(err) => tracing::warn!(error = %err, "handing executions back failed; their leases expire instead"),
    }
}

fn lease_ms(engine: &Engine) -> i64 {
    i64::try_from(engine.settings.lease_ms).unwrap_or(30_000)
}

/// Renews the leases of the executions running on this node (and no others: one whose run
/// ended without handing it back expires and any node resumes it) six times per lease period,
/// stops the runs whose lease another claim took, and passes on cancellations that reached
/// another node (they are flags in the database) to the executions running here.
async fn heartbeat(engine: Engine, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(engine.settings.lease_ms / 6);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let beat = async {
            let leases = engine.node.leases();
            if !leases.is_empty() {
                for (id, epoch) in engine.store.renew_leases(&engine.node.node_id, &leases, lease_ms(&engine)).await? {
                    tracing::warn!(execution = %id, "this node lost the execution's lease; its run stops");
                    engine.node.lose_lease(&id, epoch);
                }
            }
            for id in engine.store.cancel_requested_on(&engine.node.node_id).await? {
                engine.node.stop(&id, Stop::Cancel);
            }
            Ok::<(), sqlx::Error>(())
        };
        match dibop_core::guard::catch(beat).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "renewing execution leases failed"),
            Err(panic) => tracing::error!(panic = %panic, "the lease heartbeat panicked; it goes on"),
        }
    }
}

async fn claimer(engine: Engine, mut stop: watch::Receiver<bool>) {
    // The executions this loop started, so that aborting it aborts them.
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        if *stop.borrow() {
            return;
        }
        // While the store keeps failing, claims slow down instead of spinning on it.
        let backoff = engine.node.claim_backoff();
        if !backoff.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
        }
        let slot = tokio::select! {
            slot = engine.node.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (full, busy) = engine.node.shares();
        match engine.store.claim_execution(&engine.node.node_id, lease_ms(&engine), &full, &busy).await {
            Ok(Some(execution)) => {
                let occupied = engine.node.occupy(&execution.enterprise_id);
                let engine = engine.clone();
                running.spawn(async move {
                    run_claimed(engine.clone(), execution).await;
                    drop(occupied);
                    drop(slot);
                    // A slot and maybe an enterprise's share are free again: look for work.
                    engine.node.wake();
                });
            }
            Ok(None) => {
                drop(slot);
                tokio::select! {
                    _ = engine.node.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
            Err(err) => {
                drop(slot);
                engine.node.store_failed();
                tracing::warn!(error = %err, "claiming an execution failed");
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// Runs one claimed execution and handles what can go wrong around it: a database error hands
/// it back to the queue (it resumes from the last committed step; if handing back fails too,
/// its lease is no longer renewed and expires), a lost lease stops it with nothing more
/// written, anything else fails it. Wakes the callers waiting for it. Boxed: a
/// `sub_orchestration` step runs its child with it.
pub(super) fn run_claimed(engine: Engine, execution: ExecutionRow) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let id = execution.id.clone();
        let enterprise_id = execution.enterprise_id.clone();
        let Some(lease) = execution.lease() else {
            tracing::error!(execution = %id, "asked to run an execution no node holds the lease of");
            return;
        };
        let running = Running::new(&engine.node, &id, lease.epoch);
        let outcome = dibop_core::guard::catch(run(&engine, execution, &lease)).await;
        // From here on the heartbeat no longer renews the lease.
        drop(running);
        // Never left `running` without an owner: an engine error or a panic ends it `INTERNAL`
        // (or, when even that write fails, its lease expires and it resumes).
        let end_internal = |error: String| async {
            match engine.store.finish_execution(&lease, Finish::failed("INTERNAL", error)).await {
                Ok(ended) => engine.report_ended(ended),
                Err(err) => {
                    tracing::warn!(execution = %id, error = %err, "ending the execution failed; its lease expires and it resumes");
                }
            }
        };
        match outcome {
            Ok(Ok(())) => engine.node.store_ok(),
            Ok(Err(err)) if lease_lost(&err) => {
                tracing::warn!(execution = %id, "this node lost the execution's lease; its run stopped with nothing more written");
            }
            Ok(Err(err)) if dibop_store::unavailable_in(&err) => {
                // Transient (the database or the disk): resume later from the last committed step.
                engine.node.store_failed();
                tracing::warn!(execution = %id, error = %format!("{err:#}"), "execution interrupted; it will resume");
                if let Err(err) = engine.store.release_execution(&lease, 5_000).await {
                    tracing::warn!(execution = %id, error = %err, "handing the execution back failed; its lease expires instead");
                }
            }
            Ok(Err(err)) => {
                tracing::error!(execution = %id, error = %format!("{err:#}"), "execution failed in the engine");
                end_internal("internal engine error".into()).await;
            }
            Err(panic) => {
                // The panic ends it, with its message.
                tracing::error!(execution = %id, enterprise = %enterprise_id, panic = %panic, "the engine panicked");
                end_internal(format!("the engine panicked: {}", dibop_core::bounded::clip(&panic, 500))).await;
            }
        }
        engine.node.finished(&id);
        engine.events.run_over(&enterprise_id, &id);
    })
}
