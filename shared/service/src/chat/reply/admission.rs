//! Admission of replies to a model with a fixed number of slots: as many generate at once as it
//! has, as many again wait (a little) for a turn, and the rest are refused before anything is
//! stored — so a crowd makes some callers retry instead of making every reply crawl.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ReplyFailure;

/// The longest a reply waits for a free slot before it is refused.
pub const ADMISSION_WAIT: Duration = Duration::from_secs(10);

/// What a refused caller is told to wait before trying again.
pub const RETRY_AFTER_SECS: u64 = 5;

/// The slots of one process; a reply holds one from before its turn is stored to its end.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    /// How many may wait for a slot at once.
    line: usize,
    waiting: AtomicUsize,
}

/// A reply's slot; dropping it frees the slot.
pub(crate) struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Admission {
    pub(crate) fn new(slots: u32) -> Self {
        let slots = slots.max(1) as usize;
        Self { slots: Arc::new(Semaphore::new(slots)), line: slots, waiting: AtomicUsize::new(0) }
    }

    /// A slot now if one is free; else a place in the line and a slot within [`ADMISSION_WAIT`];
    /// else `Busy`.
    pub(crate) async fn enter(&self) -> Result<Slot, ReplyFailure> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot(permit));
        }
        let busy = || ReplyFailure::Busy { retry_after_secs: RETRY_AFTER_SECS };
        let place = Place::take(&self.waiting, self.line).ok_or_else(busy)?;
        let permit = tokio::time::timeout(ADMISSION_WAIT, self.slots.clone().acquire_owned()).await;
        drop(place);
        match permit {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            _ => Err(busy()),
        }
    }
}

/// A place in the line, given back when dropped (a caller who goes away leaves it).
struct Place<'a>(&'a AtomicUsize);

impl<'a> Place<'a> {
    fn take(waiting: &'a AtomicUsize, line: usize) -> Option<Self> {
        waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| (now < line).then_some(now + 1)).ok()?;
        Some(Self(waiting))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_then_a_line_then_refusals() {
        let admission = Arc::new(Admission::new(2));
        let (Ok(first), Ok(_second)) = (admission.enter().await, admission.enter().await) else {
            panic!("two free slots");
        };
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let admission = admission.clone();
                // A waiter keeps the slot it gets.
                tokio::spawn(async move { admission.enter().await.ok() })
            })
            .collect();
        tokio::task::yield_now().await;
        // Two wait; the fifth is refused at once.
        assert!(matches!(admission.enter().await, Err(ReplyFailure::Busy { retry_after_secs: RETRY_AFTER_SECS })));
        drop(first);
        let waited = futures::future::join_all(waiters).await;
        // One got the freed slot; the other waited out ADMISSION_WAIT (time is paused: instantly).
        assert_eq!(waited.iter().filter(|joined| matches!(joined, Ok(Some(_)))).count(), 1);
        assert_eq!(admission.waiting.load(Ordering::Acquire), 0, "the line is empty again");
    }
}
