//! The remote-write sender: ships scraped samples to one Prometheus remote-write 1.0 destination.
//!
//! [`RemoteWriteSender`] is the first implementation of [`Output`], the seam every kind of destination
//! implements (see [`output`]): the scrape loop holds outputs, not remote-write senders.
//!
//! Data flow, one stage per line:
//!
//! ```text
//! scrape loop ──submit(Arc<Batch>)──▶ relabel (cached per series) ─▶ capacity check ─▶ shard = hash % shards
//!   dispatcher: a FIFO per shard ─▶ request from the due free shards (≤ max_samples_per_send, in time
//!     order) ─▶ its own task: snappy ─▶ timeout ─▶ retry with backoff ─▶ POST; its shards wait meanwhile
//! ```
//!
//! - [`RemoteWriteSender::submit`] never blocks and never awaits: it reserves room for the batch's samples in
//!   the destination's capacity, tags each series with its shard and hands the batch over on an unbounded
//!   channel (bounded in effect by that capacity). What does not fit is dropped and counted
//!   (`reason="queue_full"`).
//! - One dispatcher task holds a FIFO of pending series per shard. Critical-tier samples are sent as soon
//!   as they arrive (coalescing whatever is already queued); standard-tier samples wait for
//!   `max_samples_per_send` or `batch_send_deadline`. A request takes from every free shard that is due,
//!   so a small scrape is one request, and a large one is a request per shard in parallel; a shard is in
//!   at most one request at a time, which keeps each series in time order. See [`shard`].
//! - A request's body is in time order as read `TimeSeries` by `TimeSeries` (see
//!   [`request::RequestCut`]), the way the remote-write compliance suite reads it.
//! - The network call is a small stack (see [`service`]): per-attempt timeout, retry with exponential
//!   backoff and jitter honouring `Retry-After` (seconds or an HTTP date).
//!
//! Architecture invariant: a sample holds capacity from `submit` until it is delivered or dropped, so the
//! queue-length gauge counts queued, batching *and* in-flight samples, and `capacity` bounds all of them.
//! A sample that is retried and then delivered is never counted as dropped.

pub mod auth;
pub mod endpoints;
mod events;
pub mod listener;
mod metrics;
pub mod output;
pub mod queued;
mod receipt;
mod request;
mod room;
mod service;
mod shard;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use surge_model::{Labels, Sample, Tier};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use auth::ClientTls;
pub use endpoints::EndpointFanOut;
pub use metrics::SenderMetrics;
pub use output::{Output, Outputs, ShutdownFuture};
pub use queued::{Attempt, Chunk, Cut, Deliver, Encoded, QueuedOptions, QueuedOutput, SendFuture};
pub use receipt::{BatchOutcome, OnSettled};

use events::{DropReason, SamplesDropped};
use metrics::DestinationMetrics;
use request::{PendingEntry, ShardMsg};
use room::Room;
use service::{HttpTransport, Transport};

/// One series' identity, shared by every batch that carries it; created once per series by the scrape loop.
///
/// One allocation holds the encoded label block: an agent keeps one of these per live series, so its size
/// is the agent's memory. Cloning is a reference-count increment. [`SeriesMeta::labels`] decodes the block
/// when a label set is needed (relabeling, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesMeta(Arc<[u8]>);

impl SeriesMeta {
    /// Encodes the label block of `labels`, once per series.
    pub fn new(labels: Labels) -> Self {
        SeriesMeta(Arc::from(surge_proto::remote_write::encode_label_block(
            &labels,
        )))
    }

    /// A series from a label block this crate encoded earlier (e.g. read back from the durable queue,
    /// whose records are checksummed).
    pub fn from_label_block(block: Arc<[u8]>) -> Self {
        SeriesMeta(block)
    }

    /// A hash of the series' identity (its label block): routes the series to a shard and keys the
    /// relabel cache. Computed on use (~15 ns) rather than stored, to keep the per-series footprint small.
    pub fn hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.0)
    }

    /// Whether `self` and `other` are the same series (equal label blocks). The same allocation answers
    /// at once, and two blocks of different series usually differ in length or in their last bytes
    /// (the label values), so the full comparison runs only when they are almost surely equal.
    pub fn same_series(&self, other: &SeriesMeta) -> bool {
        let (a, b) = (&*self.0, &*other.0);
        std::ptr::eq(a, b)
            || (a.len() == b.len() && a.last_chunk::<8>() == b.last_chunk::<8>() && a == b)
    }

    /// `surge_proto::remote_write::encode_label_block(&labels)`, reused for every request.
    pub fn label_block(&self) -> &[u8] {
        &self.0
    }

    /// The series' labels, decoded from the label block (which this crate wrote, so it always decodes).
    pub fn labels(&self) -> Labels {
        surge_proto::remote_write::decode_label_block(self.label_block()).unwrap_or_default()
    }
}

/// Samples of one series, inline up to one.
pub type Samples = smallvec::SmallVec<[Sample; 1]>;

/// The samples of one series in one batch, in time order (usually exactly one).
#[derive(Debug, Clone)]
pub struct SeriesSamples {
    pub series: SeriesMeta,
    /// Inline for the usual single sample: no allocation per sample on the scrape path.
    pub samples: Samples,
}

/// What one scrape (or ingest) produced for shipping.
#[derive(Debug, Clone)]
pub struct Batch {
    pub tier: Tier,
    pub series: Vec<SeriesSamples>,
    /// When the scrape finished (ms since the epoch); carried for latency accounting.
    pub scrape_end_ms: i64,
}

impl Batch {
    /// The number of samples in the batch.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

/// A destination's `write_relabel_configs`, compiled by the caller: `None` drops the series, `Some` replaces
/// its labels. Applied once per new series and cached by the series hash, so it may be slow-ish.
pub type RelabelFn = Arc<dyn Fn(&Labels) -> Option<Labels> + Send + Sync>;

/// Options of one remote-write destination; mirrors the `remote_write[]` config entry field by field.
#[derive(Clone)]
pub struct SenderOptions {
    /// Names the destination in metrics (`destination` label) and logs.
    pub name: String,
    /// The remote-write endpoint, `http://` or `https://`.
    pub url: String,
    /// Time allowed for one attempt (connect, send, response). Default 5 s.
    pub remote_timeout: Duration,
    /// Extra request headers (e.g. `X-Scope-OrgID`). The remote-write protocol headers cannot be overridden.
    pub headers: BTreeMap<String, String>,
    pub queue_config: QueueOptions,
    /// The destination's `write_relabel_configs`; `None` ships series unchanged.
    pub write_relabel: Option<RelabelFn>,
    /// TLS options; with them the destination gets a client of its own (see [`auth`]).
    pub tls: Option<ClientTls>,
    /// `Authorization: Bearer` from this file, re-read when it changes (see [`auth`]).
    pub bearer_token_file: Option<std::path::PathBuf>,
}

/// `queue_config` of one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueOptions {
    /// Samples buffered for this destination (queued, batching and in flight); beyond it new samples are
    /// dropped and counted. Default 100 000.
    pub capacity: usize,
    /// Shards, i.e. requests in flight at most; one series always goes through the same shard, and a small
    /// batch spread over several shards still leaves as one request. Default 4.
    pub max_shards: usize,
    /// Samples per request at most. Default 2000.
    pub max_samples_per_send: usize,
    /// The standard tier's longest batching delay (the critical tier is sent at once). Default 1 s.
    pub batch_send_deadline: Duration,
    /// First retry delay; doubles per failed attempt. Default 30 ms.
    pub min_backoff: Duration,
    /// Longest retry delay from backoff alone. Default 5 s.
    pub max_backoff: Duration,
    /// Whether HTTP 429 is retried (otherwise dropped like other 4xx). Default true.
    pub retry_on_http_429: bool,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            capacity: 100_000,
            max_shards: 4,
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(1),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
        }
    }
}

impl SenderOptions {
    /// Options for `url` with every other field at its default.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        SenderOptions {
            name: name.into(),
            url: url.into(),
            remote_timeout: Duration::from_secs(5),
            headers: BTreeMap::new(),
            queue_config: QueueOptions::default(),
            write_relabel: None,
            tls: None,
            bearer_token_file: None,
        }
    }

    /// Checks every option and returns all problems at once.
    /// Checks every option and returns all problems at once; with TLS options, their files are read
    /// (as at start).
    pub fn validate(&self) -> Result<(), InvalidSenderOptions> {
        let template = service::RequestTemplate::new(self)?;
        match &self.tls {
            Some(tls) => template
                .tls_client(tls)
                .map(|_| ())
                .map_err(|e| InvalidSenderOptions {
                    destination: self.name.clone(),
                    problems: vec![SenderOptionError::Tls(e)],
                }),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for SenderOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderOptions")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("remote_timeout", &self.remote_timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("queue_config", &self.queue_config)
            .field("write_relabel", &self.write_relabel.is_some())
            .field("tls", &self.tls)
            .field("bearer_token_file", &self.bearer_token_file)
            .finish()
    }
}

/// One problem with a destination's options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderOptionError {
    /// The URL does not parse or is not http(s).
    #[error("url: {url:?} is not an http:// or https:// URL")]
    Url { url: String },
    /// A header name or value is not valid in HTTP.
    #[error("headers: {name:?} is not a valid header name and value")]
    Header { name: String },
    /// A header the remote-write protocol sets itself.
    #[error("headers: {name:?} is set by the remote-write protocol and cannot be overridden")]
    ReservedHeader { name: String },
    /// A count or duration that must be positive is zero.
    #[error("{field}: must be greater than zero")]
    Zero { field: &'static str },
    /// `min_backoff` is above `max_backoff`.
    #[error("queue_config.min_backoff: {min:?} is above max_backoff {max:?}")]
    Backoff { min: Duration, max: Duration },
    /// The TLS options do not load (a file, a certificate, the server name).
    #[error("tls_config: {0}")]
    Tls(String),
}

/// Every problem with one destination's options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("remote_write {destination:?}: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidSenderOptions {
    pub destination: String,
    pub problems: Vec<SenderOptionError>,
}

/// What [`Output::shutdown`] (and [`RemoteWriteSender::shutdown`]) achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Samples delivered while shutting down (the flush).
    pub flushed_samples: u64,
    /// Samples that could not be sent before the deadline; counted as dropped with `reason="shutdown"`.
    pub dropped_samples: u64,
    /// Whether every shard finished before the deadline.
    pub completed: bool,
}

/// Sends batches to one remote-write destination. Cheap to clone; all clones feed the same shards.
#[derive(Clone)]
pub struct RemoteWriteSender {
    inner: Arc<SenderInner>,
}

struct SenderInner {
    shared: Arc<Shared>,
    /// The dispatcher's channel and the shard count; `None` once shutdown has begun, which closes the
    /// channel.
    shards: RwLock<Option<ShardInput>>,
    /// Why samples are dropped when `shards` is `None`.
    closed_reason: DropReason,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    relabel: Option<RelabelFn>,
    /// Relabel results by original series hash; `None` = dropped by relabeling.
    relabel_cache: Mutex<HashMap<u64, Option<SeriesMeta>>>,
}

/// Where `submit` hands samples over: the dispatcher's channel, and how many shards series are spread
/// over.
struct ShardInput {
    tx: mpsc::UnboundedSender<ShardMsg>,
    shards: usize,
}

/// The relabel cache is cleared when it grows past this many series, so series churn cannot grow it
/// forever; refilling costs one relabel call per live series.
const RELABEL_CACHE_MAX: usize = 1 << 20;

/// State shared by `submit`, the dispatcher, its delivery tasks and `shutdown`.
pub(crate) struct Shared {
    pub(crate) opts: QueueOptions,
    pub(crate) remote_timeout: Duration,
    pub(crate) metrics: DestinationMetrics,
    /// Samples holding capacity: queued, batching or in flight.
    queued: AtomicUsize,
    /// Samples delivered since start (for the shutdown report).
    pub(crate) delivered: AtomicU64,
    /// Samples dropped because of shutdown (for the shutdown report).
    pub(crate) shutdown_dropped: AtomicU64,
    /// Fired when the shutdown deadline passes: shards stop retrying and count what is left as dropped.
    pub(crate) cancel: CancellationToken,
}

impl Shared {
    /// Stops an output: `close_input` closes what feeds its tasks (they then send what they hold without
    /// waiting and end); they get until `deadline`, then are cancelled. Reports what was delivered and
    /// dropped meanwhile. A second call finds no tasks and reports nothing more.
    pub(crate) async fn close(
        &self,
        close_input: impl FnOnce(),
        tasks: &Mutex<Vec<JoinHandle<()>>>,
        deadline: Duration,
    ) -> ShutdownReport {
        let delivered_before = self.delivered.load(Ordering::Relaxed);
        let dropped_before = self.shutdown_dropped.load(Ordering::Relaxed);
        close_input();
        let tasks = std::mem::take(&mut *tasks.lock());
        let mut all = futures::future::join_all(tasks);
        let completed = match tokio::time::timeout(deadline, &mut all).await {
            Ok(_) => true,
            Err(_) => {
                self.cancel.cancel();
                all.await;
                false
            }
        };
        ShutdownReport {
            flushed_samples: self.delivered.load(Ordering::Relaxed) - delivered_before,
            dropped_samples: self.shutdown_dropped.load(Ordering::Relaxed) - dropped_before,
            completed,
        }
    }

    fn new(opts: &SenderOptions, metrics: &SenderMetrics) -> Self {
        Shared {
            remote_timeout: opts.remote_timeout,
            metrics: metrics.destination(&opts.name, "remote-write"),
            opts: opts.queue_config.clone(),
            queued: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            shutdown_dropped: AtomicU64::new(0),
            cancel: CancellationToken::new(),
        }
    }

    /// Reserves room for up to `n` samples of `room` (see [`room`]); returns how many fit.
    fn reserve(&self, n: usize, room: Room) -> usize {
        let cap = self.opts.ceiling(room);
        let mut cur = self.queued.load(Ordering::Relaxed);
        loop {
            let granted = n.min(cap.saturating_sub(cur));
            if granted == 0 {
                return 0;
            }
            match self.queued.compare_exchange_weak(
                cur,
                cur + granted,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.metrics.queue_samples.inc_by(granted as i64);
                    return granted;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Returns room for `n` samples that were delivered, dropped, or never used.
    pub(crate) fn release(&self, n: usize) {
        if n > 0 {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.metrics.queue_samples.dec_by(n as i64);
        }
    }

    /// Counts `n` samples as dropped for `reason` (logs, counts, and feeds the shutdown report).
    pub(crate) fn dropped(&self, reason: DropReason, n: usize) {
        self.dropped_because(reason, n, "");
    }

    /// Like [`Shared::dropped`], with the receiver's answer for the log.
    pub(crate) fn dropped_because(&self, reason: DropReason, n: usize, detail: &str) {
        if n == 0 {
            return;
        }
        if reason == DropReason::Shutdown {
            self.shutdown_dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
        SamplesDropped {
            reason,
            count: n,
            detail,
        }
        .emit(&self.metrics);
    }
}

impl RemoteWriteSender {
    /// Spawns the dispatcher task (needs a tokio runtime).
    ///
    /// Options should have passed [`SenderOptions::validate`] at config load. If they did not, the error
    /// is logged and the sender drops (and counts, `reason="invalid_options"`) everything submitted, so
    /// one bad destination cannot stop the agent; [`RemoteWriteSender::try_start`] reports it instead.
    pub fn start(opts: SenderOptions, client: reqwest::Client, metrics: &SenderMetrics) -> Self {
        match HttpTransport::new(&opts, client) {
            Ok(transport) => Self::start_with_transport(opts, transport, metrics),
            Err(e) => {
                tracing::error!(destination = %opts.name, error = %e, "remote-write destination disabled");
                RemoteWriteSender {
                    inner: Arc::new(SenderInner {
                        shared: Arc::new(Shared::new(&opts, metrics)),
                        shards: RwLock::new(None),
                        closed_reason: DropReason::InvalidOptions,
                        tasks: Mutex::new(Vec::new()),
                        relabel: None,
                        relabel_cache: Mutex::new(HashMap::new()),
                    }),
                }
            }
        }
    }

    /// Like [`RemoteWriteSender::start`], but invalid options are an error.
    pub fn try_start(
        opts: SenderOptions,
        client: reqwest::Client,
        metrics: &SenderMetrics,
    ) -> Result<Self, InvalidSenderOptions> {
        let transport = HttpTransport::new(&opts, client)?;
        Ok(Self::start_with_transport(opts, transport, metrics))
    }

    /// Starts with any transport; tests use a scripted one under tokio's paused clock.
    pub(crate) fn start_with_transport<T: Transport>(
        opts: SenderOptions,
        transport: T,
        metrics: &SenderMetrics,
    ) -> Self {
        let shards = opts.queue_config.max_shards.max(1);
        let shared = Arc::new(Shared::new(&opts, metrics));
        let (tx, rx) = mpsc::unbounded_channel();
        let dispatcher = shard::Dispatcher::new(shards, rx, shared.clone(), Arc::new(transport));
        let task = tokio::spawn(dispatcher.run());
        RemoteWriteSender {
            inner: Arc::new(SenderInner {
                shared,
                shards: RwLock::new(Some(ShardInput { tx, shards })),
                closed_reason: DropReason::Shutdown,
                tasks: Mutex::new(vec![task]),
                relabel: opts.write_relabel,
                relabel_cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Enqueues `batch` for shipping. Never blocks and never awaits: samples that do not fit in the
    /// destination's capacity are dropped and counted (`queue_full`); after shutdown, everything is
    /// dropped and counted (`shutdown`).
    pub fn submit(&self, batch: Arc<Batch>) {
        self.submit_inner(batch, 0, None);
    }

    /// Like [`RemoteWriteSender::submit`], where the last `health` series of the batch are health
    /// series (`up` and the other synthetic series of a scrape): they use the room kept for them, so
    /// they are not dropped because other series filled the queue (see [`room`]).
    pub fn submit_with_health(&self, batch: Arc<Batch>, health: usize) {
        self.submit_inner(batch, health, None);
    }

    /// Like [`RemoteWriteSender::submit`], and calls `on_settled` once the sender is done
    /// with every sample of the batch (delivered, dropped for good, or cancelled by shutdown; see
    /// [`BatchOutcome`]). Called from a delivery task or from this call itself; it must not block.
    /// The durable queue uses this to advance its cursor only past delivered batches.
    pub fn submit_tracked(&self, batch: Arc<Batch>, on_settled: OnSettled) {
        self.submit_tracked_with_health(batch, 0, on_settled);
    }

    /// [`RemoteWriteSender::submit_tracked`] where the last `health` series are health series, as in
    /// [`RemoteWriteSender::submit_with_health`]: the durable queue keeps the health room too.
    pub fn submit_tracked_with_health(
        &self,
        batch: Arc<Batch>,
        health: usize,
        on_settled: OnSettled,
    ) {
        let receipt = receipt::Receipt::new(batch.sample_count(), on_settled);
        self.submit_inner(batch, health, Some(receipt));
    }

    fn submit_inner(
        &self,
        batch: Arc<Batch>,
        health: usize,
        receipt: Option<Arc<receipt::Receipt>>,
    ) {
        let inner = &*self.inner;
        let shared = &*inner.shared;
        let guard = inner.shards.read();
        let Some(input) = guard.as_ref() else {
            shared.dropped(inner.closed_reason, batch.sample_count());
            return;
        };

        // Resolve each series' outgoing identity first, so samples relabeled away take no capacity.
        let routed = inner.route(&batch);
        let first_health = batch.series.len().saturating_sub(health);
        let wanted = |health: bool| -> usize {
            routed
                .iter()
                .filter(|(i, _)| (*i >= first_health) == health)
                .map(|(i, _)| batch.series[*i].samples.len())
                .sum()
        };
        let (wanted_data, wanted_health) = (wanted(false), wanted(true));
        if let Some(r) = &receipt {
            // Relabeled away: settled for good at once.
            r.dropped(batch.sample_count() - wanted_data - wanted_health);
        }
        if wanted_data + wanted_health == 0 {
            return;
        }
        let mut room_data = shared.reserve(wanted_data, Room::Tier(batch.tier));
        let mut room_health = shared.reserve(wanted_health, Room::Health);
        let now = tokio::time::Instant::now();
        // The batch's series per shard, in batch order.
        let mut by_shard: smallvec::SmallVec<[Vec<(usize, SeriesMeta)>; 4]> =
            (0..input.shards.max(1)).map(|_| Vec::new()).collect();
        if let [only] = by_shard.as_mut_slice() {
            only.reserve(routed.len());
        }
        let mut full = 0;
        for (idx, meta) in routed {
            let n = batch.series[idx].samples.len();
            let room = if idx >= first_health {
                &mut room_health
            } else {
                &mut room_data
            };
            // Whole series only: a series' samples in one batch stay together, so time order holds.
            if n > *room {
                full += n;
                continue;
            }
            *room -= n;
            // One shard (the usual agent): no need to hash the label block, a cold read per series.
            let shard = if by_shard.len() > 1 {
                shard_for(meta.hash(), by_shard.len())
            } else {
                0
            };
            by_shard[shard].push((idx, meta));
        }
        let entries: Vec<PendingEntry> = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, series)| !series.is_empty())
            .map(|(shard, series)| {
                PendingEntry::new(shard, batch.clone(), series, now).with_receipt(receipt.clone())
            })
            .collect();
        shared.release(room_data + room_health);
        if !entries.is_empty()
            && let Err(mpsc::error::SendError(msg)) = input.tx.send(ShardMsg::new(entries))
        {
            // The dispatcher is gone (it only ends after shutdown or a panic): give the room back.
            let n = msg.samples();
            shared.release(n);
            shared.dropped(DropReason::Shutdown, n);
        }
        if let Some(r) = &receipt {
            r.dropped(full);
        }
        shared.dropped(DropReason::QueueFull, full);
    }

    /// The most samples one scrape may submit here (a quarter of `capacity`; see [`room`]).
    pub fn max_scrape_samples(&self) -> usize {
        self.inner.shared.opts.max_scrape_samples()
    }

    /// Stops accepting, flushes everything queued (the standard tier without waiting for its deadline)
    /// and waits up to `deadline`. What is still unsent then is dropped and counted (`reason="shutdown"`).
    ///
    /// Takes the sender by value for its existing callers; [`Output::shutdown`] is the same through a
    /// shared reference, which is what a holder of `Arc<dyn Output>` has.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        self.close(deadline).await
    }

    /// The body of [`RemoteWriteSender::shutdown`]. A shared reference suffices because stopping only
    /// takes the shard channels and task handles out of their locks; a second call finds them gone and
    /// reports nothing more.
    pub(crate) async fn close(&self, deadline: Duration) -> ShutdownReport {
        let inner = &*self.inner;
        // Dropping the sender closes the channel: the dispatcher drains it, flushes and ends.
        let close_input = || drop(inner.shards.write().take());
        inner
            .shared
            .close(close_input, &inner.tasks, deadline)
            .await
    }

    /// Samples currently holding capacity (queued, batching or in flight).
    pub fn queued_samples(&self) -> usize {
        self.inner.shared.queued.load(Ordering::Relaxed)
    }
}

impl SenderInner {
    /// The batch's non-empty series with their outgoing identity (after relabeling).
    fn route(&self, batch: &Batch) -> Vec<(usize, SeriesMeta)> {
        let present = batch
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.samples.is_empty());
        let Some(relabel) = &self.relabel else {
            // Sized up front: a filtered iterator would grow the vector from empty, copying it each time.
            let mut routed = Vec::with_capacity(batch.series.len());
            routed.extend(present.map(|(i, s)| (i, s.series.clone())));
            return routed;
        };
        let mut cache = self.relabel_cache.lock();
        if cache.len() > RELABEL_CACHE_MAX {
            cache.clear();
        }
        present
            .filter_map(|(i, s)| {
                let meta = cache
                    .entry(s.series.hash())
                    .or_insert_with(|| {
                        relabel(&s.series.labels()).map(|l| {
                            if l == s.series.labels() {
                                s.series.clone()
                            } else {
                                SeriesMeta::new(l)
                            }
                        })
                    })
                    .clone()?;
                Some((i, meta))
            })
            .collect()
    }
}

/// The shard that carries series `hash`: one series always goes through one shard, so it stays in order.
pub(crate) fn shard_for(hash: u64, shards: usize) -> usize {
    (hash % shards.max(1) as u64) as usize
}
