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
    /// Its lease is no longer held (this node stalled past it, or could not renew it, and the
    /// execution was claimed again): the run stops at once and writes nothing more.
    LeaseLost,
}

impl Stop {
    pub(super) fn message(self) -> &'static str {
        match self {
            Self::Cancel => "cancelled",
            Self::Shutdown => "interrupted by the node shutting down",
            Self::LeaseLost => "interrupted: this node lost the execution's lease",
        }
    }

    /// Whether the run must leave at once, abandoning the step in flight (a shutdown past its
    /// grace period, or a lost lease), rather than before its next step.
    pub fn abandons(self) -> bool {
        matches!(self, Self::Shutdown | Self::LeaseLost)
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

    /// Waits until the run must be abandoned (see [`Stop::abandons`]); answers why.
    pub async fn abandoned(&mut self) -> Stop {
        self.wait(|why| why.is_some_and(Stop::abandons)).await.unwrap_or(Stop::Shutdown)
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

/// The stop switch of one running execution, and the lease epoch it runs under.
type Switch = (watch::Sender<Option<Stop>>, i64);

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
    /// The stop switch of each execution running on this node, with the lease epoch it runs
    /// under: the heartbeat renews exactly these leases.
    running: std::sync::Mutex<std::collections::HashMap<String, Switch>>,
    /// Consecutive store failures of claims and runs (see [`Node::store_failed`]).
    store_failures: std::sync::atomic::AtomicU32,
    /// Executions of each enterprise in this node's slots.
    in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// How far ahead each orchestration's throttled calls are booked (admission paces by it).
    pub(super) horizons: crate::admission::Horizons,
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
            store_failures: std::sync::atomic::AtomicU32::new(0),
            in_flight: std::sync::Mutex::default(),
            horizons: crate::admission::Horizons::default(),
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
        StopSignal(self.running.lock().ok().and_then(|m| m.get(execution_id).map(|(tx, _)| tx.subscribe())))
    }

    /// Tells an execution running on this node to stop; false when it does not run here.
    pub fn stop(&self, execution_id: &str, why: Stop) -> bool {
        let Ok(m) = self.running.lock() else { return false };
        m.get(execution_id).is_some_and(|(tx, _)| {
            send(tx, why);
            true
        })
    }

    /// Tells the run of `execution_id` under lease `epoch` that its lease is lost (a run under
    /// a newer lease of the same execution on this node goes on).
    pub fn lose_lease(&self, execution_id: &str, epoch: i64) {
        if let Ok(m) = self.running.lock()
            && let Some((tx, _)) = m.get(execution_id).filter(|(_, held)| *held == epoch)
        {
            send(tx, Stop::LeaseLost);
        }
    }

    /// The leases of the executions running on this node: (execution id, epoch).
    pub fn leases(&self) -> Vec<(String, i64)> {
        self.running.lock().map(|m| m.iter().map(|(id, (_, epoch))| (id.clone(), *epoch)).collect()).unwrap_or_default()
    }

    /// Counts a claim or a run that ended in a store error (the database or the disk failing):
    /// the claim loops wait longer before each claim while failures repeat, so a failing
    /// store is not hammered and no execution is started over and over.
    pub fn store_failed(&self) {
        self.store_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Clears the count of [`Node::store_failed`]: a run committed again.
    pub fn store_ok(&self) {
        self.store_failures.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long a claim loop waits before its next claim: nothing while the store works, then
    /// 0.5 s doubling with each consecutive failure up to 10 s.
    pub fn claim_backoff(&self) -> std::time::Duration {
        match self.store_failures.load(std::sync::atomic::Ordering::Relaxed) {
            0 => std::time::Duration::ZERO,
            n => std::time::Duration::from_millis((500_u64 << (n - 1).min(5)).min(10_000)),
        }
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

    /// A free slot, if any: the caller may claim an execution and run it there (execute does).
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

/// Sets why a run must stop. A shutdown or a lost lease overrides a cancellation (the flag in
/// the database still ends the execution `cancelled` wherever it resumes); a lost lease
/// overrides everything.
fn send(tx: &watch::Sender<Option<Stop>>, why: Stop) {
    tx.send_if_modified(|current| {
        let change = match (*current, why) {
            (None, _) => true,
            (Some(Stop::LeaseLost), _) => false,
            (Some(now), why) => why.abandons() && now != why,
        };
        if change {
            *current = Some(why);
        }
        change
    });
}

/// Registers an execution's stop switch and lease while it runs on this node.
pub(super) struct Running {
    engine: Arc<Node>,
    id: String,
    epoch: i64,
}

impl Running {
    pub(super) fn new(engine: &Arc<Node>, id: &str, epoch: i64) -> Self {
        if let Ok(mut m) = engine.running.lock() {
            match m.get(id) {
                Some((_, held)) if *held == epoch => {}
                stale => {
                    // This node claimed the execution again while an older run of it was still
                    // going (its lease had expired): that run is over.
                    if let Some((tx, _)) = stale {
                        send(tx, Stop::LeaseLost);
                    }
                    m.insert(id.to_owned(), (watch::channel(None).0, epoch));
                }
            }
        }
        Self { engine: engine.clone(), id: id.to_owned(), epoch }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut m) = self.engine.running.lock()
            && m.get(&self.id).is_some_and(|(_, held)| *held == self.epoch)
        {
            m.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Node, Running, Stop};

    #[test]
    fn claims_back_off_while_the_store_fails_and_not_after() {
        let node = Node::new(4, 2);
        assert_eq!(node.claim_backoff(), Duration::ZERO);
        let waits: Vec<u64> = (0..8)
            .map(|_| {
                node.store_failed();
                u64::try_from(node.claim_backoff().as_millis()).unwrap_or(u64::MAX)
            })
            .collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        node.store_ok();
        assert_eq!(node.claim_backoff(), Duration::ZERO);
    }

    #[test]
    fn only_running_leases_are_named_and_a_newer_claim_supersedes_an_older_run() {
        let node = Arc::new(Node::new(4, 2));
        let first = Running::new(&node, "e1", 1);
        let stale = node.signal("e1");
        assert_eq!(node.leases(), [("e1".to_owned(), 1)]);
        // Claimed again on this node (the first lease had expired): the older run is over.
        let second = Running::new(&node, "e1", 2);
        assert_eq!(stale.get(), Some(Stop::LeaseLost));
        assert_eq!(node.leases(), [("e1".to_owned(), 2)]);
        // The older run ending leaves the newer one registered.
        drop(first);
        assert_eq!(node.leases(), [("e1".to_owned(), 2)]);
        // A loss reported for another epoch does not touch the run.
        node.lose_lease("e1", 1);
        assert_eq!(node.signal("e1").get(), None);
        node.lose_lease("e1", 2);
        assert_eq!(node.signal("e1").get(), Some(Stop::LeaseLost));
        // A cancellation cannot hide a lost lease.
        node.stop("e1", Stop::Cancel);
        assert_eq!(node.signal("e1").get(), Some(Stop::LeaseLost));
        drop(second);
        assert!(node.leases().is_empty());
    }
}
