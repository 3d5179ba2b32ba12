//! Pacing at the moment a request leaves: the `Pacer` a rate-limited call carries keeps its
//! first request inside the window of the permit it was admitted with. A call admitted on time
//! can still reach its first request late (many calls that woke at one window's start take
//! turns on the guest cores); that request then takes the next permit and waits for its window
//! within the call's time, or, when that permit is too far away, is not sent at all and the
//! call reports itself late (the step runs it again on the permit the pacer kept).

use super::*;

/// The rate limit of a call's requests at the moment they leave (engine-provided, like the
/// [`Authenticator`]).
pub trait Pacer: Send + Sync {
    /// The last instant (unix ms) the call's first request may leave on its admitted permit.
    fn send_by(&self) -> i64;
    /// The first request is late: take the next permit and answer how long to wait for its
    /// window, or `None` when the request must not leave in this call (the permit is further
    /// away than the call may wait, `remaining` being what is left of its time).
    fn repace(&self, remaining: Duration) -> BoxFuture<'static, Option<Duration>>;
}

/// A [`Pacer`] in a [`crate::CallSpec`].
#[derive(Clone)]
pub struct PaceHandle(pub Arc<dyn Pacer>);

impl std::fmt::Debug for PaceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaceHandle(..)")
    }
}

/// Whether a request of the call may leave: the first one on its permit's window (after
/// waiting for the next one when late); every later one once the first went. A call whose
/// first request could not go sends nothing more ([`Recorder::late`]).
pub(super) async fn paced(pacer: Arc<dyn Pacer>, recorder: &Recorder, first: bool, deadline: Instant) -> bool {
    if recorder.late() {
        return false;
    }
    if !first || dibop_core::now_ms() <= pacer.send_by() {
        return true;
    }
    match pacer.repace(deadline.saturating_duration_since(Instant::now())).await {
        Some(wait) => {
            tokio::time::sleep(wait).await;
            true
        }
        None => {
            recorder.mark_late();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Admitted until `send_by`; a late request gets `next` (a wait, or none).
    struct Fixed {
        send_by: i64,
        next: Option<Duration>,
        repaced: AtomicUsize,
    }

    impl Pacer for Fixed {
        fn send_by(&self) -> i64 {
            self.send_by
        }

        fn repace(&self, _remaining: Duration) -> BoxFuture<'static, Option<Duration>> {
            self.repaced.fetch_add(1, Ordering::SeqCst);
            let next = self.next;
            Box::pin(async move { next })
        }
    }

    fn pacer(send_by: i64, next: Option<Duration>) -> Arc<Fixed> {
        Arc::new(Fixed { send_by, next, repaced: AtomicUsize::new(0) })
    }

    #[tokio::test]
    async fn an_early_first_request_goes_and_a_late_one_waits_for_the_next_permit_or_stays() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let now = dibop_core::now_ms();

        let on_time = pacer(now + 60_000, None);
        let recorder = Recorder::default();
        assert!(paced(on_time.clone(), &recorder, true, deadline).await);
        assert_eq!(on_time.repaced.load(Ordering::SeqCst), 0);

        let late = pacer(now - 1, Some(Duration::from_millis(30)));
        let recorder = Recorder::default();
        let started = Instant::now();
        assert!(paced(late.clone(), &recorder, true, deadline).await, "the next permit is near: wait for it");
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(late.repaced.load(Ordering::SeqCst), 1);
        assert!(paced(late.clone(), &recorder, false, deadline).await, "later requests are not paced");
        assert_eq!(late.repaced.load(Ordering::SeqCst), 1);

        let stuck = pacer(now - 1, None);
        let recorder = Recorder::default();
        assert!(!paced(stuck.clone(), &recorder, true, deadline).await, "no permit in time: not sent");
        assert!(recorder.late());
        assert!(!paced(stuck.clone(), &recorder, false, deadline).await, "a late call sends nothing more");
        assert_eq!(stuck.repaced.load(Ordering::SeqCst), 1);
    }
}
