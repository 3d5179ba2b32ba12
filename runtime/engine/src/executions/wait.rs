//! Waiting for an execution's end, bounded, and the shutdown switch that ends every wait.

use std::time::{Duration, Instant};

use dibop_core::ExecutionStatus;
use tokio::sync::watch;

use super::ExecutionError;
use crate::Engine;
use dibop_store::ExecutionRow;

/// Whether the node started shutting down. A caller that waits (execute) selects on
/// [`Draining::started`] so that it answers with what it knows so far while its connection is
/// still open, instead of being cut when the grace period ends.
#[derive(Clone)]
pub struct Draining(watch::Receiver<Option<tokio::time::Instant>>);

impl Draining {
    /// Watches `since`: when the shutdown signal came (the grace period counts from there).
    pub fn new(since: watch::Receiver<Option<tokio::time::Instant>>) -> Self {
        Self(since)
    }

    /// Whether the shutdown has started.
    pub fn now(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Resolves when the shutdown starts (at once if it has, or if the switch is gone).
    pub async fn started(&self) {
        let _ = self.0.clone().wait_for(Option::is_some).await;
    }
}

/// How often a waiter reads an execution that another node may run: this node's worker wakes
/// it at once, another node's progress is seen at this pace.
const POLL: Duration = Duration::from_millis(500);

/// The execution `id` once it ended, or as it stands when `deadline` passes or the node starts
/// shutting down. A paused execution waits for a resume: it is answered at once.
pub async fn wait_for_end(
    engine: &Engine,
    enterprise_id: &str,
    id: &str,
    deadline: Instant,
    draining: &Draining,
) -> Result<ExecutionRow, ExecutionError> {
    let read = || async {
        engine
            .store
            .get_execution(enterprise_id, id)
            .await?
            .ok_or_else(|| ExecutionError::NotFound(format!("execution {id}")))
    };
    let waits = |row: &ExecutionRow| !row.is_final() && row.status != ExecutionStatus::Paused;
    let mut execution = read().await?;
    while waits(&execution) && Instant::now() < deadline && !draining.now() {
        // Watch first, then read: an end between the two still wakes the watch.
        let done = engine.node.watch(id);
        execution = read().await?;
        if !waits(&execution) {
            break;
        }
        let wait = deadline.saturating_duration_since(Instant::now()).min(POLL);
        tokio::select! {
            _ = tokio::time::timeout(wait, done) => {}
            () = draining.started() => {}
        }
        execution = read().await?;
    }
    Ok(execution)
}
