//! A queued output for every receiver that is not remote-write: CloudWatch EMF, PutMetricData, OTLP, ….
//!
//! [`QueuedOutput`] keeps the [`Output`] contract (bounded, never blocking, counted drops, per-series
//! order, tiers, graceful bounded shutdown) once, so an output only says how a chunk of batches becomes
//! requests and how one request is sent: that is [`Deliver`].
//!
//! ```text
//! submit(Arc<Batch>) ─▶ capacity check ─▶ lane of the batch's tier (critical | standard)
//!   lane task: coalesce (critical: whatever is queued, at once; standard: up to max_samples_per_send
//!     or batch_send_deadline) ─▶ Deliver::encode ─▶ each request in order: budget ─▶ timeout ─▶
//!     Deliver::send ─▶ retry with backoff + jitter (a retry-after hint is a floor) ─▶ next request
//! ```
//!
//! Design choices:
//!
//! - **One lane per tier, each sequential.** A lane sends one request at a time, in the order batches
//!   arrived, so a series' samples leave in submission order (a series belongs to one target, and so to
//!   one tier). The critical lane never waits behind the standard lane's batching or its retries.
//!   Receivers here are rate-limited APIs (PutMetricData, PutLogEvents) where a request already carries
//!   up to a thousand metrics, so parallel requests per tier would buy little and cost the ordering.
//! - **Requests are retried one by one.** [`Deliver::encode`] cuts a chunk into requests once; a request
//!   that fails is retried on its own, so the requests before it are never sent twice.
//! - **Capacity counts samples** from `submit` until their request is delivered or dropped, exactly like
//!   the remote-write sender: a throttling storm fills the queue to `capacity` and then new batches are
//!   dropped (`reason="queue_full"`); memory never grows past it.
//! - **Drops use the remote-write families** (`surge_remote_write_samples_dropped_total{destination,
//!   reason}` and friends): one dashboard for every output. Reasons are `&'static str`, so bounded.
//! - A request's failure is either retried (throttling, 5xx, timeout, network) or refused and its samples
//!   dropped (a 4xx, a wrong credential): a refusal logs one line per [`LOG_INTERVAL`](super::events) and
//!   counts, it is never retried into a storm.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use surge_model::Tier;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{DropReason, RequestRetried, RetryReason, SamplesDropped};
use super::request::RequestStats;
use super::room::Room;
use super::service::Backoff;
use super::{Batch, Output, QueueOptions, SenderMetrics, Shared, ShutdownFuture, ShutdownReport};

/// The future [`Deliver::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Attempt> + Send + 'a>>;

/// What a lane hands to [`Deliver::encode`]: batches of one tier, in arrival order.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub tier: Tier,
    pub batches: Vec<Arc<Batch>>,
}

impl Chunk {
    /// The number of samples in the chunk.
    pub fn sample_count(&self) -> usize {
        self.batches.iter().map(|b| b.sample_count()).sum()
    }
}

/// One request cut from a chunk, with the samples it carries (they hold capacity until it is done).
#[derive(Debug, Clone)]
pub struct Cut<R> {
    pub request: R,
    pub samples: usize,
    /// The newest sample timestamp in the request (ms), for the highest-sent gauge.
    pub highest_timestamp_ms: Option<i64>,
}

/// A chunk turned into requests.
///
/// Samples of the chunk that are neither in a request nor in `dropped` were consumed without being
/// sent, which is not a drop: e.g. a counter's first point, which only sets the baseline of its deltas.
#[derive(Debug, Clone)]
pub struct Encoded<R> {
    /// In the order they must be sent.
    pub requests: Vec<Cut<R>>,
    /// Samples the receiver would refuse (a NaN, an out-of-range timestamp, an unusable name), by
    /// reason; counted as dropped.
    pub dropped: Vec<(&'static str, usize)>,
}

impl<R> Default for Encoded<R> {
    fn default() -> Self {
        Encoded {
            requests: Vec::new(),
            dropped: Vec::new(),
        }
    }
}

/// How one attempt to send a request ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Accepted; `bytes` is what went over the wire (for `surge_remote_write_sent_bytes_total`).
    Delivered { bytes: usize },
    /// Transient (throttling, 5xx, a network error): sent again after a backoff, with `after` as the
    /// least wait when the receiver named one.
    Retry {
        reason: &'static str,
        after: Option<Duration>,
        detail: String,
    },
    /// Refused for good (a 4xx, a wrong credential or region): its samples are dropped and counted.
    Refused {
        reason: &'static str,
        detail: String,
    },
}

/// How an output turns chunks into requests and sends one request.
///
/// `encode` is called by one lane at a time per tier but by both lanes concurrently, so state kept
/// across chunks (a counter's last value) needs interior mutability.
pub trait Deliver: Send + Sync + 'static {
    type Request: Send + Sync + 'static;

    /// The kind of output, for log lines (`emf`, `cloudwatch`, `otlp`, ...): the line's
    /// `destination` field names the configured instance, this says what it is.
    const KIND: &'static str = "queued output";

    /// Cuts `chunk` into requests within the receiver's limits; never fails (what cannot be sent is
    /// dropped and counted).
    fn encode(&self, chunk: &Chunk) -> Encoded<Self::Request>;

    /// Sends one request once; the queue retries it as the answer says.
    fn send<'a>(&'a self, request: &'a Self::Request) -> SendFuture<'a>;
}

/// Options of one queued output.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedOptions {
    /// Names the output in logs and in the `destination` label.
    pub name: String,
    /// Samples held (queued, batching, in flight); beyond it new batches are dropped. Default 100 000.
    pub capacity: usize,
    /// The standard lane sends once this many samples are waiting. Default 10 000.
    pub max_samples_per_send: usize,
    /// The standard lane's longest batching delay. Default 5 s.
    pub batch_send_deadline: Duration,
    /// First retry delay, doubling per failed attempt. Default 100 ms.
    pub min_backoff: Duration,
    /// Longest retry delay from backoff alone. Default 10 s.
    pub max_backoff: Duration,
    /// Time allowed for one attempt. Default 10 s.
    pub attempt_timeout: Duration,
    /// Attempts (first tries and retries, both lanes) per second at most; `None` is unlimited.
    pub max_requests_per_second: Option<f64>,
}

impl QueuedOptions {
    /// Options named `name`, every other field at its default.
    pub fn new(name: impl Into<String>) -> Self {
        QueuedOptions {
            name: name.into(),
            capacity: 100_000,
            max_samples_per_send: 10_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(10),
            max_requests_per_second: None,
        }
    }

    fn queue_options(&self) -> QueueOptions {
        QueueOptions {
            capacity: self.capacity,
            max_shards: 1,
            max_samples_per_send: self.max_samples_per_send.max(1),
            batch_send_deadline: self.batch_send_deadline,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff.max(self.min_backoff),
            retry_on_http_429: true,
        }
    }
}

/// An [`Output`] in front of any [`Deliver`]. Cheap to clone; clones feed the same lanes.
pub struct QueuedOutput<D: Deliver> {
    inner: Arc<QueuedInner<D>>,
}

impl<D: Deliver> Clone for QueuedOutput<D> {
    fn clone(&self) -> Self {
        QueuedOutput {
            inner: self.inner.clone(),
        }
    }
}

struct QueuedInner<D> {
    shared: Arc<Shared>,
    /// The lanes' channels; `None` once shutdown has begun, which closes them.
    lanes: RwLock<Option<LaneInputs>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    _deliver: std::marker::PhantomData<D>,
}

struct LaneInputs {
    critical: mpsc::UnboundedSender<Arc<Batch>>,
    standard: mpsc::UnboundedSender<Arc<Batch>>,
}

impl<D: Deliver> QueuedOutput<D> {
    /// Spawns the two lane tasks (needs a tokio runtime).
    pub fn start(opts: QueuedOptions, deliver: D, metrics: &SenderMetrics) -> Self {
        let queue = opts.queue_options();
        let shared = Arc::new(Shared {
            remote_timeout: opts.attempt_timeout,
            metrics: metrics.destination(&opts.name, D::KIND),
            opts: queue,
            queued: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            shutdown_dropped: AtomicU64::new(0),
            cancel: CancellationToken::new(),
        });
        let deliver = Arc::new(deliver);
        let budget = Arc::new(Budget::new(opts.max_requests_per_second));
        let (ctx, crx) = mpsc::unbounded_channel();
        let (stx, srx) = mpsc::unbounded_channel();
        let lane = |tier, rx| Lane {
            tier,
            rx,
            deliver: deliver.clone(),
            shared: shared.clone(),
            budget: budget.clone(),
        };
        let tasks = vec![
            tokio::spawn(lane(Tier::Critical, crx).run()),
            tokio::spawn(lane(Tier::Standard, srx).run()),
        ];
        QueuedOutput {
            inner: Arc::new(QueuedInner {
                shared,
                lanes: RwLock::new(Some(LaneInputs {
                    critical: ctx,
                    standard: stx,
                })),
                tasks: Mutex::new(tasks),
                _deliver: std::marker::PhantomData,
            }),
        }
    }

    /// Samples currently holding capacity (queued, batching or in flight).
    pub fn queued_samples(&self) -> usize {
        self.inner.shared.queued.load(Ordering::Relaxed)
    }

    async fn close(&self, deadline: Duration) -> ShutdownReport {
        let inner = &*self.inner;
        // Closing the channels tells each lane to send what it holds without waiting and end.
        let close_input = || drop(inner.lanes.write().take());
        inner
            .shared
            .close(close_input, &inner.tasks, deadline)
            .await
    }
}

impl<D: Deliver> Output for QueuedOutput<D> {
    fn name(&self) -> &str {
        &self.inner.shared.metrics.destination
    }

    fn submit(&self, batch: Arc<Batch>) {
        let inner = &*self.inner;
        let shared = &*inner.shared;
        let n = batch.sample_count();
        if n == 0 {
            return;
        }
        let guard = inner.lanes.read();
        let Some(lanes) = guard.as_ref() else {
            shared.dropped(DropReason::Shutdown, n);
            return;
        };
        // Whole batches only: the lane hands batches to the encoder as they came.
        let granted = shared.reserve(n, Room::Tier(batch.tier));
        if granted < n {
            shared.release(granted);
            shared.dropped(DropReason::QueueFull, n);
            return;
        }
        let tx = match batch.tier {
            Tier::Critical => &lanes.critical,
            Tier::Standard => &lanes.standard,
        };
        if tx.send(batch).is_err() {
            // The lane is gone (only after shutdown or a panic): give the room back.
            shared.release(n);
            shared.dropped(DropReason::Shutdown, n);
        }
    }

    fn shutdown(&self, deadline: Duration) -> ShutdownFuture<'_> {
        Box::pin(self.close(deadline))
    }
}

/// Paces attempts to at most `rate` per second across both lanes (no burst: one slot per 1/rate).
struct Budget {
    interval: Option<Duration>,
    next: Mutex<Option<Instant>>,
}

impl Budget {
    fn new(rate: Option<f64>) -> Self {
        let interval = rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| Duration::from_secs_f64(1.0 / r));
        Budget {
            interval,
            next: Mutex::new(None),
        }
    }

    /// Waits for the next free slot.
    async fn acquire(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let now = Instant::now();
            let mut next = self.next.lock();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// How a lane's delivery of one request ended.
enum Sent {
    Delivered,
    Refused,
    Cancelled,
}

/// One tier's queue: a task that batches, encodes and sends in order.
struct Lane<D: Deliver> {
    tier: Tier,
    rx: mpsc::UnboundedReceiver<Arc<Batch>>,
    deliver: Arc<D>,
    shared: Arc<Shared>,
    budget: Arc<Budget>,
}

impl<D: Deliver> Lane<D> {
    async fn run(mut self) {
        let max = self.shared.opts.max_samples_per_send;
        let mut pending: Vec<Arc<Batch>> = Vec::new();
        let mut pending_samples = 0usize;
        let mut oldest: Option<Instant> = None;
        let mut open = true;
        while open || !pending.is_empty() {
            if self.shared.cancel.is_cancelled() {
                break;
            }
            let due = match self.tier {
                Tier::Critical => !pending.is_empty(),
                Tier::Standard => {
                    !open
                        || pending_samples >= max
                        || oldest.is_some_and(|t| {
                            t + self.shared.opts.batch_send_deadline <= Instant::now()
                        })
                }
            };
            if due && !pending.is_empty() {
                let chunk = Chunk {
                    tier: self.tier,
                    batches: std::mem::take(&mut pending),
                };
                pending_samples = 0;
                oldest = None;
                if !self.send_chunk(&chunk).await {
                    break;
                }
                continue;
            }
            if !open {
                continue;
            }
            let deadline = oldest.map(|t| t + self.shared.opts.batch_send_deadline);
            let received = tokio::select! {
                biased;
                _ = self.shared.cancel.cancelled() => break,
                b = self.rx.recv() => b,
                _ = sleep_until_opt(deadline) => continue,
            };
            let Some(batch) = received else {
                open = false;
                continue;
            };
            oldest.get_or_insert_with(Instant::now);
            pending_samples += batch.sample_count();
            pending.push(batch);
            // Coalesce whatever else is already queued, up to one request's worth.
            while pending_samples < max
                && let Ok(b) = self.rx.try_recv()
            {
                pending_samples += b.sample_count();
                pending.push(b);
            }
        }
        // Cancelled at the shutdown deadline: what is left is dropped and counted.
        let mut left: usize = pending.iter().map(|b| b.sample_count()).sum();
        self.rx.close();
        while let Ok(b) = self.rx.try_recv() {
            left += b.sample_count();
        }
        self.shared.release(left);
        self.shared.dropped(DropReason::Shutdown, left);
    }

    /// Encodes and sends one chunk; `false` when the shutdown deadline cancelled it (its unsent samples
    /// are then already counted).
    async fn send_chunk(&self, chunk: &Chunk) -> bool {
        let total = chunk.sample_count();
        let encoded = self.deliver.encode(chunk);
        for &(reason, n) in &encoded.dropped {
            self.shared.dropped(DropReason::Refused(reason), n);
        }
        // The samples that stay held until their request is done; the rest (dropped above, or consumed
        // without sending, like a counter's baseline) give their room back now. Clamped so an encoder
        // that over-reports can never release room it did not hold.
        let mut held = encoded
            .requests
            .iter()
            .map(|c| c.samples)
            .sum::<usize>()
            .min(total);
        self.shared.release(total - held);
        for cut in &encoded.requests {
            let n = cut.samples.min(held);
            held -= n;
            match self.send_with_retry(cut).await {
                Sent::Delivered | Sent::Refused => self.shared.release(n),
                Sent::Cancelled => {
                    let left = n + held;
                    self.shared.release(left);
                    self.shared.dropped(DropReason::Shutdown, left);
                    return false;
                }
            }
        }
        true
    }

    async fn send_with_retry(&self, cut: &Cut<D::Request>) -> Sent {
        let shared = &*self.shared;
        let metrics = &shared.metrics;
        let mut backoff = Backoff::new(&shared.opts);
        let mut attempt = 1u32;
        loop {
            tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return Sent::Cancelled,
                _ = self.budget.acquire() => {}
            }
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return Sent::Cancelled,
                r = tokio::time::timeout(shared.remote_timeout, self.deliver.send(&cut.request)) => {
                    r.unwrap_or_else(|_| Attempt::Retry {
                        reason: "timeout",
                        after: None,
                        detail: format!("no answer within {:?}", shared.remote_timeout),
                    })
                }
            };
            let took = started.elapsed();
            match result {
                Attempt::Delivered { bytes } => {
                    metrics.observe_status("2xx", took);
                    metrics.delivered(
                        &RequestStats {
                            samples: cut.samples,
                            series: 0,
                            highest_timestamp_ms: cut.highest_timestamp_ms,
                        },
                        bytes,
                    );
                    shared
                        .delivered
                        .fetch_add(cut.samples as u64, Ordering::Relaxed);
                    return Sent::Delivered;
                }
                Attempt::Refused { reason, detail } => {
                    metrics.observe_status(reason, took);
                    SamplesDropped {
                        reason: DropReason::Refused(reason),
                        count: cut.samples,
                        detail: &detail,
                    }
                    .emit(metrics);
                    return Sent::Refused;
                }
                Attempt::Retry {
                    reason,
                    after,
                    detail,
                } => {
                    metrics.observe_status(reason, took);
                    let wait = backoff.next_delay(after);
                    RequestRetried {
                        shard: tier_index(self.tier),
                        reason: RetryReason::Other(reason),
                        attempt,
                        wait,
                        detail: &detail,
                    }
                    .emit(metrics);
                    tokio::select! {
                        biased;
                        _ = shared.cancel.cancelled() => return Sent::Cancelled,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

/// The lane's number in the retry log's `shard` field (0 critical, 1 standard).
fn tier_index(tier: Tier) -> usize {
    match tier {
        Tier::Critical => 0,
        Tier::Standard => 1,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
