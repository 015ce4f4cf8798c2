//! Per-batch delivery receipts: how a caller that keeps its own copy of a batch (the durable queue)
//! learns when the sender is done with it.
//!
//! A [`Receipt`] is shared by every piece of one tracked batch (its pending entries and the requests
//! they are cut into). Each request adds its samples to `delivered` (2xx) or `dropped` (refused for
//! good: an HTTP 4xx) when it ends; samples that never fit (`queue_full`) or were relabeled away are
//! added at submit. When the last piece lets go, whatever path it took (delivered, refused, cancelled
//! at the shutdown deadline, cleared from a queue), the callback runs once with the totals. So a
//! shutdown needs no bookkeeping of its own: what it cancels shows up as neither delivered nor dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// The fate of one tracked batch, reported once by [`RemoteWriteSender::submit_tracked`](crate::RemoteWriteSender::submit_tracked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Samples in the batch.
    pub samples: usize,
    /// Samples the destination accepted (2xx).
    pub delivered: usize,
    /// Samples given up on for good and counted by the sender as dropped (refused with a 4xx, no room
    /// in the queue) or dropped by `write_relabel_configs`.
    pub dropped: usize,
}

impl BatchOutcome {
    /// Samples neither delivered nor dropped for good: cancelled by a shutdown, so a caller that keeps
    /// the batch should send it again later.
    pub fn unsettled(&self) -> usize {
        self.samples.saturating_sub(self.delivered + self.dropped)
    }
}

/// Called once with a tracked batch's [`BatchOutcome`].
pub type OnSettled = Box<dyn FnOnce(BatchOutcome) + Send>;

/// Shared by the pieces of one tracked batch; reports when the last one is dropped.
pub(crate) struct Receipt {
    samples: usize,
    delivered: AtomicUsize,
    dropped: AtomicUsize,
    on_settled: Mutex<Option<OnSettled>>,
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt")
            .field("samples", &self.samples)
            .field("delivered", &self.delivered)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl Receipt {
    pub(crate) fn new(samples: usize, on_settled: OnSettled) -> Arc<Self> {
        Arc::new(Receipt {
            samples,
            delivered: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            on_settled: Mutex::new(Some(on_settled)),
        })
    }

    pub(crate) fn delivered(&self, n: usize) {
        self.delivered.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn dropped(&self, n: usize) {
        self.dropped.fetch_add(n, Ordering::AcqRel);
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some(f) = self.on_settled.get_mut().take() {
            f(BatchOutcome {
                samples: self.samples,
                delivered: *self.delivered.get_mut(),
                dropped: *self.dropped.get_mut(),
            });
        }
    }
}
