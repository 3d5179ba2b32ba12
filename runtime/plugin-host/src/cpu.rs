//! Guest code's share of the cores. Plugin calls mostly wait (on a dealer system's answer), and
//! a waiting call costs no core; but a guest that computes holds a runtime thread for each
//! slice between its epoch yields, and as many busy guests as there are runtime threads would
//! leave the HTTP API, the claim loops and the database nothing. So guest code runs only under
//! a permit, held for one poll of the call (one slice) and released while the call waits:
//! at most `GUEST_CPUS` slices run at once, queued fairly (first come, first served), and one
//! runtime thread is always left for everything else.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Guest slices that may run at once: the cores but one (at least one).
pub fn guest_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// The process's permits (the runtime threads are the process's too).
pub(crate) fn permits() -> &'static Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(Semaphore::new(guest_cpus())))
}

/// `inner`, polled only while holding one of `permits`.
pub(crate) struct OnCpu<F> {
    inner: Pin<Box<F>>,
    permits: Arc<Semaphore>,
    /// This call's place in the queue for a permit, while it waits for one.
    queued: Option<BoxFuture<'static, Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>>,
}

impl<F: Future> OnCpu<F> {
    pub(crate) fn new(inner: F, permits: &Arc<Semaphore>) -> Self {
        Self { inner: Box::pin(inner), permits: permits.clone(), queued: None }
    }
}

impl<F: Future> Future for OnCpu<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let permit = match this.queued.as_mut() {
            // A free permit is taken at once only when nobody queues (tokio hands released
            // permits to the queue first).
            None => match this.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let queued = this.queued.insert(Box::pin(this.permits.clone().acquire_owned()));
                    match queued.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(permit) => permit.ok(),
                    }
                }
            },
            Some(queued) => match queued.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(permit) => permit.ok(),
            },
        };
        this.queued = None;
        let polled = this.inner.as_mut().poll(cx);
        drop(permit);
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A future that burns its thread for `slices` polls of 5 ms, yielding in between, and
    /// records how many such slices ran at once.
    async fn busy(slices: usize, running: Arc<AtomicUsize>, most: Arc<AtomicUsize>) {
        for _ in 0..slices {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn busy_guests_run_no_more_slices_at_once_than_there_are_permits() {
        let permits = Arc::new(Semaphore::new(2));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> =
            (0..8).map(|_| tokio::spawn(OnCpu::new(busy(10, running.clone(), most.clone()), &permits))).collect();
        for task in tasks {
            task.await.expect("task");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "four runtime threads, two permits");
        assert_eq!(permits.available_permits(), 2, "every permit came back");

        // Without the bound, the same work takes all four threads: the test can tell.
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(busy(10, running.clone(), most.clone()))).collect();
        for task in tasks {
            task.await.expect("task");
        }
        assert!(most.load(Ordering::SeqCst) >= 3);
    }
}
