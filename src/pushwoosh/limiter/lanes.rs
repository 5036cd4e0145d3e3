//! The two lines a method's callers wait in, urgent and bulk.
//!
//! Each line is first come, first served (tokio's semaphore is fair), and only its head
//! takes cells, so a caller cannot be overtaken for ever by luckier ones of its lane. The
//! one permit of a line is the turn at its head, held while that caller waits for its slot
//! and released when the slot is granted, before the call: it guards no data, waiting in
//! line is the rate-limit wait itself. Between the lines the urgent one comes first: the
//! bulk head takes no cell while an urgent caller is inside `acquire`, so the next cell
//! that frees goes to the urgent line, however many bulk calls wait.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use super::Priority;

pub(super) struct Lanes {
    urgent: Semaphore,
    bulk: Semaphore,
    /// Urgent callers inside `acquire`, in line or at its head.
    urgent_inside: AtomicUsize,
    /// Wakes the bulk head when the last urgent caller is gone.
    urgent_gone: Notify,
}

/// An urgent caller counted in until it is granted or gives up.
pub(super) struct Inside<'a> {
    lanes: Option<&'a Lanes>,
}

impl Lanes {
    pub(super) fn new() -> Self {
        Self {
            urgent: Semaphore::new(1),
            bulk: Semaphore::new(1),
            urgent_inside: AtomicUsize::new(0),
            urgent_gone: Notify::new(),
        }
    }

    /// Counts an urgent caller in, from before it joins its line, so that the bulk head
    /// yields to it while it waits for its turn too.
    pub(super) fn enter(&self, priority: Priority) -> Inside<'_> {
        match priority {
            Priority::Urgent => {
                self.urgent_inside.fetch_add(1, Ordering::SeqCst);
                Inside { lanes: Some(self) }
            }
            Priority::Bulk => Inside { lanes: None },
        }
    }

    /// The turn at the head of `priority`'s line. The semaphores are never closed, so
    /// this is never `None`.
    pub(super) async fn turn(&self, priority: Priority) -> Option<SemaphorePermit<'_>> {
        let line = match priority {
            Priority::Urgent => &self.urgent,
            Priority::Bulk => &self.bulk,
        };
        line.acquire().await.ok()
    }

    /// For the bulk head: `None` when no urgent caller is inside, else what to await
    /// until none is. Created before the count is read, so that the last one leaving in
    /// between still wakes it.
    pub(super) fn urgent_ahead(&self) -> Option<Notified<'_>> {
        let gone = self.urgent_gone.notified();
        (self.urgent_inside.load(Ordering::SeqCst) > 0).then_some(gone)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        if let Some(lanes) = self.lanes
            && lanes.urgent_inside.fetch_sub(1, Ordering::SeqCst) == 1
        {
            lanes.urgent_gone.notify_waiters();
        }
    }
}
