//! Panics stop where they happen. A panic inside one execution's step, one scheduler tick or
//! one housekeeping pass becomes an error of that unit of work (logged with its ids); the
//! long-lived loops around them (workers, heartbeat, scheduler, housekeeping) keep running.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

/// Runs `work` and turns a panic inside it into `Err(message)`.
///
/// The futures guarded here own their state or only read shared state through locks and the
/// database, so observing them after a panic cannot see a broken invariant of ours: the unit
/// of work that panicked is failed as a whole.
pub async fn catch<F: Future>(work: F) -> Result<F::Output, String> {
    AssertUnwindSafe(work).catch_unwind().await.map_err(|payload| panic_message(payload.as_ref()))
}

/// The text a panic was raised with (`panic!("...")`, `.expect("...")`, index out of bounds).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_its_message() {
        let caught = catch(async {
            let text = "é";
            // Slicing inside a character is the kind of bug this guard contains.
            let cut = std::hint::black_box(1);
            text[..cut].len()
        })
        .await;
        let message = caught.expect_err("the slice panics");
        assert!(message.contains("char boundary"), "{message}");
        assert_eq!(catch(async { 7 }).await, Ok(7));
    }
}
