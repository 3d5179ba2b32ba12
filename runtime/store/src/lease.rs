//! Leases on claimed executions and how a write under a lost one is recognized (see
//! `Batch::fence` and ARCHITECTURE.md, "Leases and fencing").

/// The lease a node holds on an execution it claimed. Every write of a claimed execution names
/// it and is refused, with nothing written, once the execution was claimed again (its lease
/// expired and another node, or another run on this node, took it over): see
/// [`is_lease_lost`](crate::is_lease_lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub execution_id: String,
    pub owner: String,
    pub epoch: i64,
}

/// Whether `err` is a write refused because the execution's lease is no longer held (see
/// [`Lease`]): another node, or another run on this node, claimed it after the lease expired.
/// Nothing of the refused write was stored; the run that made it must stop at once.
pub fn is_lease_lost(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.message().contains("lease_fence"))
}
