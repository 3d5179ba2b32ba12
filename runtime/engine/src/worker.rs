//! Claim loops and the lease heartbeat: claim queued executions (fairly across enterprises)
//! while this node has a free slot, run each on its own task in that slot, and keep their
//! leases. An execution waiting on I/O (a plugin's HTTP call, a `wait`, a child) holds only its
//! slot; the node runs up to `max_in_flight` of them and leaves the rest queued in the database.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::node::Running;
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

/// Runs an execution this node claimed in a slot it holds, on its own task (a caller that goes
/// away does not stop it); the receiver resolves when it ended or was handed back.
pub fn run_now(
    engine: &Engine,
    execution: ExecutionRow,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, receiver) = tokio::sync::oneshot::channel();
    let engine = engine.clone();
    let occupied = engine.node.occupy(&execution.enterprise_id);
    tokio::spawn(async move {
        run_claimed(engine, execution).await;
        drop(occupied);
        drop(slot);
        let _ = done.send(());
    });
    receiver
}

/// Starts the claim loops, the lease heartbeat and the scheduler; they stop when `stop` flips.
/// Aborting a claim loop aborts the executions it started (shutdown does so only after
/// handing them back).
pub fn start(engine: &Engine, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = (0..CLAIMERS).map(|_| tokio::spawn(claimer(engine.clone(), stop.clone()))).collect();
    tasks.push(tokio::spawn(heartbeat(engine.clone(), stop.clone())));
    tasks.push(tokio::spawn(schedule::run(engine.clone(), stop.clone())));
    tasks
}

fn lease_ms(engine: &Engine) -> i64 {
    i64::try_from(engine.settings.lease_ms).unwrap_or(30_000)
}

/// Renews this node's leases six times per lease period, and passes on cancellations that
/// reached another node (they are flags in the database) to the executions running here.
async fn heartbeat(engine: Engine, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(engine.settings.lease_ms / 6);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let beat = async {
            engine.store.renew_leases(&engine.node.node_id, lease_ms(&engine)).await?;
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
                tracing::warn!(error = %err, "claiming an execution failed");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Runs one claimed execution and handles what can go wrong around it: a database error hands
/// it back to the queue (it resumes from the last committed step), anything else fails it.
/// Wakes the callers waiting for it. Boxed: a `sub_orchestration` step runs its child with it.
pub(super) fn run_claimed(engine: Engine, execution: ExecutionRow) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let id = execution.id.clone();
        let enterprise_id = execution.enterprise_id.clone();
        let running = Running::new(&engine.node, &id);
        let outcome = dibop_core::guard::catch(run(&engine, execution)).await;
        drop(running);
        let internal = |error: String| Finish::failed("INTERNAL", error);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) if err.downcast_ref::<sqlx::Error>().is_some() => {
                // Transient (the database): resume later from the last committed step.
                tracing::warn!(execution = %id, error = %format!("{err:#}"), "execution interrupted; it will resume");
                let _ = engine.store.release_execution(&id, 5_000).await;
            }
            Ok(Err(err)) => {
                tracing::error!(execution = %id, error = %format!("{err:#}"), "execution failed in the engine");
                if let Ok(ended) = engine.store.finish_execution(&id, internal("internal engine error".into())).await {
                    engine.report_ended(ended);
                }
            }
            Err(panic) => {
                // Never left `running` without an owner: the panic ends it, with its message.
                tracing::error!(execution = %id, enterprise = %enterprise_id, panic = %panic, "the engine panicked");
                let error = format!("the engine panicked: {}", dibop_core::bounded::clip(&panic, 500));
                if let Ok(ended) = engine.store.finish_execution(&id, internal(error)).await {
                    engine.report_ended(ended);
                }
            }
        }
        engine.node.finished(&id);
        engine.events.run_over(&enterprise_id, &id);
    })
}
