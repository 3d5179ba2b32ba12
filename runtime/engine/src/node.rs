//! A node's engine handle: its execution slots and fair shares, the stop switch of each
//! running execution, and the callers waiting for results.

use std::sync::Arc;

use tokio::sync::{Notify, watch};

/// Why a running execution must stop before its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Someone cancelled it: it ends `cancelled`.
    Cancel,
    /// This node shuts down: it goes back to the queue and resumes elsewhere (or after a restart).
    Shutdown,
}

impl Stop {
    pub(super) fn message(self) -> &'static str {
        match self {
            Self::Cancel => "cancelled",
            Self::Shutdown => "interrupted by the node shutting down",
        }
    }
}

/// Resolves when the execution it was taken for is told to stop.
#[derive(Clone)]
pub struct StopSignal(Option<watch::Receiver<Option<Stop>>>);

impl StopSignal {
    /// A signal that never fires.
    pub fn never() -> Self {
        Self(None)
    }

    /// Why the execution must stop, if it must.
    pub fn get(&self) -> Option<Stop> {
        self.0.as_ref().and_then(|rx| *rx.borrow())
    }

    /// Waits until the execution is told to stop (forever for [`StopSignal::never`]).
    pub async fn stopped(&mut self) -> Stop {
        self.wait(|why| why.is_some()).await.unwrap_or(Stop::Cancel)
    }

    /// Waits until the node shuts down.
    pub async fn shutdown(&mut self) {
        self.wait(|why| *why == Some(Stop::Shutdown)).await;
    }

    async fn wait(&mut self, until: impl FnMut(&Option<Stop>) -> bool) -> Option<Stop> {
        let Some(rx) = self.0.as_mut() else { return std::future::pending().await };
        let seen = rx.wait_for(until).await.map(|why| *why);
        match seen {
            Ok(why) => why,
            // The execution ended and its sender is gone: nothing will fire any more.
            Err(_) => std::future::pending().await,
        }
    }
}

/// Shared by the API (to wake the claim loops and wait for results) and the claim loops.
pub struct Node {
    /// This node's lease owner name.
    pub node_id: String,
    /// One permit per execution this node may run at once (`max_in_flight`), shared by the
    /// claim loops and by execute requests that run their execution at once.
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    capacity: usize,
    /// Most executions of one enterprise this node runs at once (fair share).
    per_enterprise: usize,
    pub(super) wake: Notify,
    /// Callers waiting for one execution to finish on this node, by execution id.
    waiters: std::sync::Mutex<std::collections::HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>>>,
    /// The stop switch of each execution running on this node.
    running: std::sync::Mutex<std::collections::HashMap<String, watch::Sender<Option<Stop>>>>,
    /// Executions of each enterprise in this node's slots.
    in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Node {
    /// A handle for a node running at most `capacity` executions at once, at most
    /// `per_enterprise` of them for one enterprise.
    pub fn new(capacity: usize, per_enterprise: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            node_id: format!("node-{}", uuid::Uuid::new_v4().simple()),
            slots: Arc::new(tokio::sync::Semaphore::new(capacity)),
            capacity,
            per_enterprise: per_enterprise.clamp(1, capacity),
            wake: Notify::new(),
            waiters: std::sync::Mutex::default(),
            running: std::sync::Mutex::default(),
            in_flight: std::sync::Mutex::default(),
        }
    }

    /// Whether `enterprise_id` may start another execution on this node now.
    pub fn has_share(&self, enterprise_id: &str) -> bool {
        self.in_flight.lock().map_or(true, |m| m.get(enterprise_id).copied().unwrap_or(0) < self.per_enterprise)
    }

    /// Counts an execution of `enterprise_id` in one of this node's slots until the guard drops.
    pub(super) fn occupy(self: &Arc<Self>, enterprise_id: &str) -> Occupied {
        if let Ok(mut m) = self.in_flight.lock() {
            *m.entry(enterprise_id.to_owned()).or_default() += 1;
        }
        Occupied { engine: self.clone(), enterprise_id: enterprise_id.to_owned() }
    }

    /// Enterprises this node runs executions of: at their share (not to be claimed for), and
    /// all of them (claimed for after the enterprises with nothing running here).
    pub(super) fn shares(&self) -> (Vec<String>, Vec<String>) {
        let Ok(m) = self.in_flight.lock() else { return (Vec::new(), Vec::new()) };
        let full = m.iter().filter(|(_, n)| **n >= self.per_enterprise).map(|(e, _)| e.clone()).collect();
        let busy = m.iter().filter(|(_, n)| **n > 0).map(|(e, _)| e.clone()).collect();
        (full, busy)
    }

    /// The stop signal of an execution running on this node (one that never fires otherwise).
    pub fn signal(&self, execution_id: &str) -> StopSignal {
        StopSignal(self.running.lock().ok().and_then(|m| m.get(execution_id).map(watch::Sender::subscribe)))
    }

    /// Tells an execution running on this node to stop; false when it does not run here.
    pub fn stop(&self, execution_id: &str, why: Stop) -> bool {
        let Ok(m) = self.running.lock() else { return false };
        m.get(execution_id).is_some_and(|tx| {
            // A shutdown overrides a cancellation (the flag in the database still ends the
            // execution `cancelled` wherever it resumes).
            tx.send_if_modified(|current| {
                let change = current.is_none() || (why == Stop::Shutdown && *current != Some(why));
                if change {
                    *current = Some(why);
                }
                change
            });
            true
        })
    }

    /// Tells every execution running on this node to stop.
    pub fn stop_all(&self, why: Stop) {
        let ids: Vec<String> = self.running.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for id in ids {
            self.stop(&id, why);
        }
    }

    /// Whether all slots are free (nothing runs on this node).
    pub fn idle(&self) -> bool {
        self.slots.available_permits() == self.capacity
    }

    /// Execution slots in use on this node.
    pub fn busy(&self) -> usize {
        self.capacity.saturating_sub(self.slots.available_permits())
    }

    /// A free slot, if any: the caller may claim an execution and run it with [`run_now`].
    pub fn free_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Tells an idle claim loop there is work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A receiver that resolves when `execution_id` finishes on this node. Register before
    /// reading the execution's status, so a completion in between is not missed.
    pub fn watch(&self, execution_id: &str) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            // Drop the senders of callers that gave up (or whose execution ended elsewhere).
            waiters.retain(|_, senders| {
                senders.retain(|s| !s.is_closed());
                !senders.is_empty()
            });
            waiters.entry(execution_id.to_owned()).or_default().push(tx);
        }
        rx
    }

    /// Wakes the callers waiting for `execution_id`.
    pub(super) fn finished(&self, execution_id: &str) {
        let senders = self.waiters.lock().ok().and_then(|mut w| w.remove(execution_id)).unwrap_or_default();
        for sender in senders {
            let _ = sender.send(());
        }
    }
}

impl Default for Node {
    fn default() -> Self {
        Self::new(4, 3)
    }
}

/// One execution of an enterprise in one of this node's slots.
pub(super) struct Occupied {
    engine: Arc<Node>,
    enterprise_id: String,
}

impl Drop for Occupied {
    fn drop(&mut self) {
        if let Ok(mut m) = self.engine.in_flight.lock()
            && let Some(n) = m.get_mut(&self.enterprise_id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.enterprise_id);
            }
        }
    }
}

/// Registers an execution's stop switch while it runs on this node.
pub(super) struct Running {
    engine: Arc<Node>,
    id: String,
}

impl Running {
    pub(super) fn new(engine: &Arc<Node>, id: &str) -> Self {
        if let Ok(mut m) = engine.running.lock() {
            m.entry(id.to_owned()).or_insert_with(|| watch::channel(None).0);
        }
        Self { engine: engine.clone(), id: id.to_owned() }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut m) = self.engine.running.lock() {
            m.remove(&self.id);
        }
    }
}
