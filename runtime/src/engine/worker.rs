//! Workers and the lease heartbeat: claim queued executions (fairly across enterprises), run
//! them in a slot, and keep their leases.

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::handle::Running;
use super::runner::run;
use super::{Stop, schedule};
use crate::state::AppState;
use crate::store::{ExecutionRow, Finish};

/// How often idle workers look for work they were not woken for (other nodes, expired leases).
const POLL: Duration = Duration::from_millis(500);

/// Runs an execution this node claimed in a slot it holds, on its own task (a caller that goes
/// away does not stop it); the receiver resolves when it ended or was handed back.
pub fn run_now(
    state: &AppState,
    execution: ExecutionRow,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, receiver) = tokio::sync::oneshot::channel();
    let state = state.clone();
    let occupied = state.engine.occupy(&execution.enterprise_id);
    tokio::spawn(async move {
        run_claimed(state, execution).await;
        drop(occupied);
        drop(slot);
        let _ = done.send(());
    });
    receiver
}

/// Starts `count` workers and the lease heartbeat; they stop when `stop` flips.
pub fn start(state: &AppState, count: usize, stop: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = (0..count.max(1)).map(|_| tokio::spawn(worker(state.clone(), stop.clone()))).collect();
    tasks.push(tokio::spawn(heartbeat(state.clone(), stop.clone())));
    tasks.push(tokio::spawn(schedule::run(state.clone(), stop.clone())));
    tasks
}

fn lease_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.lease_ms).unwrap_or(30_000)
}

/// Renews this node's leases six times per lease period, and passes on cancellations that
/// reached another node (they are flags in the database) to the executions running here.
async fn heartbeat(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(state.config.lease_ms / 6);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let beat = async {
            state.store.renew_leases(&state.engine.node_id, lease_ms(&state)).await?;
            for id in state.store.cancel_requested_on(&state.engine.node_id).await? {
                state.engine.stop(&id, Stop::Cancel);
            }
            Ok::<(), sqlx::Error>(())
        };
        match crate::guard::catch(beat).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "renewing execution leases failed"),
            Err(panic) => tracing::error!(panic = %panic, "the lease heartbeat panicked; it goes on"),
        }
    }
}

async fn worker(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let slot = tokio::select! {
            slot = state.engine.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (full, busy) = state.engine.shares();
        match state.store.claim_execution(&state.engine.node_id, lease_ms(&state), &full, &busy).await {
            Ok(Some(execution)) => {
                let occupied = state.engine.occupy(&execution.enterprise_id);
                run_claimed(state.clone(), execution).await;
                drop(occupied);
                drop(slot);
                // More work may be queued: let another worker look too.
                state.engine.wake();
            }
            Ok(None) => {
                drop(slot);
                tokio::select! {
                    _ = state.engine.wake.notified() => {}
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
pub(super) fn run_claimed(state: AppState, execution: ExecutionRow) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let id = execution.id.clone();
        let enterprise_id = execution.enterprise_id.clone();
        let running = Running::new(&state.engine, &id);
        let outcome = crate::guard::catch(run(&state, execution)).await;
        drop(running);
        let internal = |error: String| Finish::failed("INTERNAL", error);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) if err.downcast_ref::<sqlx::Error>().is_some() => {
                // Transient (the database): resume later from the last committed step.
                tracing::warn!(execution = %id, error = %format!("{err:#}"), "execution interrupted; it will resume");
                let _ = state.store.release_execution(&id, 5_000).await;
            }
            Ok(Err(err)) => {
                tracing::error!(execution = %id, error = %format!("{err:#}"), "execution failed in the engine");
                if let Ok(ended) = state.store.finish_execution(&id, internal("internal engine error".into())).await {
                    super::count_ended(ended);
                }
            }
            Err(panic) => {
                // Never left `running` without an owner: the panic ends it, with its message.
                tracing::error!(execution = %id, enterprise = %enterprise_id, panic = %panic, "the engine panicked");
                let error = format!("the engine panicked: {}", crate::bounded::clip(&panic, 500));
                if let Ok(ended) = state.store.finish_execution(&id, internal(error)).await {
                    super::count_ended(ended);
                }
            }
        }
        state.engine.finished(&id);
        tokio::spawn(crate::alerts::execution_ended(state.clone(), enterprise_id, id));
    })
}
