//! The output seam: where shipped batches leave the scrape path (and the aggregator's onward write).
//!
//! The agent's scrape loop knows only [`Output`] (the aggregator's onward writer needs no more either).
//! [`RemoteWriteSender`] is the first implementation; a CloudWatch EMF, PutMetricData, OTLP or
//! durable-queue output is another implementation of the same trait, not an edit to the agent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::{Batch, RemoteWriteSender, ShutdownReport};

/// The future [`Output::shutdown`] returns: boxed so the trait stays object-safe (`Arc<dyn Output>`)
/// without a macro crate.
pub type ShutdownFuture<'a> = Pin<Box<dyn Future<Output = ShutdownReport> + Send + 'a>>;

/// One destination of shipped batches.
///
/// The contract every implementation keeps:
///
/// - **Never blocks the caller.** [`Output::submit`] is called on the scrape path, from every scrape loop
///   at once. It neither blocks nor awaits: it queues the batch (keep the `Arc`; every output of a fan-out
///   shares the same batch, so it is never copied per output) or drops it.
/// - **Drops are counted, with a bounded `reason`.** Whatever is not accepted (a full queue) or cannot be
///   delivered (refused by the receiver, unsent at the shutdown deadline) is counted as dropped under a
///   `reason` label from a fixed set (`queue_full`, `http_<status>`, `shutdown`, ...) and labelled with
///   [`Output::name`]. A retry that later succeeds is not a drop.
/// - **Per-series order.** The samples of one series leave in the order they were submitted: the scrape
///   loop submits each target's batches in time order, and receivers reject out-of-order samples.
///   Different series may be delivered in any order, and so in parallel.
/// - **Tiers.** A [`Tier::Critical`](surge_model::Tier::Critical) batch is on the autoscaling latency
///   path: it is sent as soon as it is queued, never held back for batching. Standard batches may wait.
/// - **Shutdown is graceful and bounded.** [`Output::shutdown`] stops accepting (later submits are dropped
///   and counted as `shutdown`), delivers what is queued without waiting for batching timers, and resolves
///   within about `deadline` with a [`ShutdownReport`]; what is still unsent then is dropped and counted.
///   It is idempotent: a second call resolves at once and reports nothing more.
pub trait Output: Send + Sync + 'static {
    /// Names the destination in logs and in the `destination` label of its metrics: stable and of
    /// bounded cardinality (a configured name, never a URL with credentials).
    fn name(&self) -> &str;

    /// Queues `batch` for delivery, or drops and counts it; never blocks and never awaits.
    fn submit(&self, batch: Arc<Batch>);

    /// Stops accepting and flushes within `deadline`; see the trait's contract.
    fn shutdown(&self, deadline: Duration) -> ShutdownFuture<'_>;

    /// Like [`Output::submit`], where the last `health` series of `batch` are health series (a scrape's
    /// `up`, `scrape_duration_seconds`, …): an output with a bounded queue keeps room for them, so a
    /// target's health is never dropped because other series filled the queue. The default submits
    /// the batch as usual.
    fn submit_with_health(&self, batch: Arc<Batch>, health: usize) {
        let _ = health;
        self.submit(batch);
    }

    /// The most samples one scrape may hand to this output, if it has such a bound (a share of a
    /// bounded queue). The agent refuses a larger scrape whole, with `up` = 0 and the reason, instead of
    /// letting it fill the queue. The default is no bound.
    fn max_scrape_samples(&self) -> Option<usize> {
        None
    }
}

impl Output for RemoteWriteSender {
    fn name(&self) -> &str {
        &self.inner.shared.metrics.destination
    }

    fn submit(&self, batch: Arc<Batch>) {
        RemoteWriteSender::submit(self, batch);
    }

    fn shutdown(&self, deadline: Duration) -> ShutdownFuture<'_> {
        Box::pin(self.close(deadline))
    }

    fn submit_with_health(&self, batch: Arc<Batch>, health: usize) {
        RemoteWriteSender::submit_with_health(self, batch, health);
    }

    fn max_scrape_samples(&self) -> Option<usize> {
        Some(RemoteWriteSender::max_scrape_samples(self))
    }
}

/// Every output of a process, fed as one: each batch goes to each output, as one shared allocation.
/// Cheap to clone; clones feed the same outputs.
#[derive(Clone, Default)]
pub struct Outputs(Arc<[Arc<dyn Output>]>);

impl Outputs {
    pub fn new(outputs: Vec<Arc<dyn Output>>) -> Self {
        Outputs(outputs.into())
    }

    /// Hands `batch` to every output, in order. An empty batch goes nowhere: it would only cost each
    /// output a queue entry.
    pub fn submit(&self, batch: Batch) {
        if batch.series.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        for output in self.0.iter() {
            output.submit(batch.clone());
        }
    }

    /// Like [`Outputs::submit`], where the last `health` series are health series (see
    /// [`Output::submit_with_health`]).
    pub fn submit_with_health(&self, batch: Batch, health: usize) {
        if batch.series.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        for output in self.0.iter() {
            output.submit_with_health(batch.clone(), health);
        }
    }

    /// The smallest [`Output::max_scrape_samples`] of the outputs; `None` when none has a bound.
    pub fn max_scrape_samples(&self) -> Option<usize> {
        self.0.iter().filter_map(|o| o.max_scrape_samples()).min()
    }

    /// Shuts every output down at once (so the deadline bounds the whole flush, not each output in turn)
    /// and returns each one's name and report, in order.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<(&str, ShutdownReport)> {
        let flushes = self.0.iter().map(|o| async move {
            let report = o.shutdown(deadline).await;
            (o.name(), report)
        });
        futures::future::join_all(flushes).await
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Output>> + '_ {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Arc<dyn Output>> for Outputs {
    fn from_iter<I: IntoIterator<Item = Arc<dyn Output>>>(iter: I) -> Self {
        Outputs(iter.into_iter().collect())
    }
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|o| o.name()))
            .finish()
    }
}
