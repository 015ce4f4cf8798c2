//! The shards and their dispatcher: one task that batches every shard's series and keeps up to one
//! request in flight per shard.
//!
//! A series always belongs to one shard ([`shard_for`](super::shard_for)) and a shard is in at most one
//! request at a time, taken from the front of its FIFO: that is what keeps every series in time order,
//! request after request, retries included. A request is not tied to a single shard, though: it takes
//! whatever is due from every *free* shard, up to `max_samples_per_send`. So a small scrape leaves as one
//! request however many shards its series hash to, while a large one fills a request per shard and sends
//! them in parallel (at most `max_shards` in flight).
//!
//! The loop, each turn:
//! 1. cut and start every request that is due: a free shard is due when it holds critical samples, a
//!    full request's worth, samples older than `batch_send_deadline`, or the input is closed for
//!    shutdown. Due shards fill requests first; pending samples of free shards that are not due yet ride
//!    along in the last request if it has room (so a critical batch carries the standard samples queued
//!    beside it);
//! 2. wait for new input, a request to finish (its shards are free again), the next shard's batch
//!    deadline, or cancellation.
//!
//! Each request is delivered in its own task (encoding, compression, retries), so requests of different
//! shards use different cores. While a shard's request is being retried, `submit` keeps queueing behind
//! it; capacity, not the channel, bounds that.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use smallvec::SmallVec;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;

use super::Shared;
use super::events::DropReason;
use super::request::{PendingQueue, RequestCut, RequestStats, ShardMsg};
use super::service::{Delivery, Transport, deliver};

/// The shards of one request (usually all of them for a small scrape, one for a large one).
type ShardSet = SmallVec<[usize; 4]>;

/// A request's delivery task, seen from the dispatcher: it ends with the shards it held.
type InFlight = Pin<Box<dyn Future<Output = ShardSet> + Send>>;

/// One shard's state in the dispatcher.
#[derive(Default)]
struct ShardQueue {
    pending: PendingQueue,
    /// A request holding samples of this shard is in flight.
    busy: bool,
}

pub(crate) struct Dispatcher<T> {
    rx: mpsc::UnboundedReceiver<ShardMsg>,
    shared: Arc<Shared>,
    transport: Arc<T>,
    shards: Vec<ShardQueue>,
    in_flight: FuturesUnordered<InFlight>,
    /// The channel is closed (shutdown began): flush without waiting for timers.
    closed: bool,
}

impl<T: Transport> Dispatcher<T> {
    pub(crate) fn new(
        shards: usize,
        rx: mpsc::UnboundedReceiver<ShardMsg>,
        shared: Arc<Shared>,
        transport: Arc<T>,
    ) -> Self {
        Dispatcher {
            rx,
            shared,
            transport,
            shards: (0..shards.max(1)).map(|_| ShardQueue::default()).collect(),
            in_flight: FuturesUnordered::new(),
            closed: false,
        }
    }

    pub(crate) async fn run(mut self) {
        let batch_deadline = self.shared.opts.batch_send_deadline;
        let cancel = self.shared.cancel.clone();
        loop {
            if cancel.is_cancelled() {
                break;
            }
            self.start_due_requests();
            if self.closed && self.in_flight.is_empty() && self.pending() == 0 {
                return;
            }
            let deadline = self
                .shards
                .iter()
                .filter(|s| !s.busy)
                .filter_map(|s| s.pending.oldest())
                .min()
                .map(|t| t + batch_deadline);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(shards) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    for s in shards {
                        self.shards[s].busy = false;
                    }
                }
                msg = self.rx.recv(), if !self.closed => match msg {
                    Some(msg) => {
                        self.push(msg);
                        self.coalesce();
                    }
                    None => self.closed = true,
                },
                _ = sleep_until_opt(deadline) => {}
            }
        }
        // Cancelled: requests in flight see the token, count their samples as dropped and end.
        while self.in_flight.next().await.is_some() {}
        self.drop_remaining();
    }

    fn push(&mut self, msg: ShardMsg) {
        let n = self.shards.len();
        for e in msg.into_entries() {
            // `submit` routes with the same shard count; the modulo only guards the index.
            self.shards[e.shard() % n].pending.push(e);
        }
    }

    /// Takes what is already queued in the channel (without waiting), so a critical batch carries
    /// whatever arrived alongside it.
    fn coalesce(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(msg) => self.push(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
    }

    fn pending(&self) -> usize {
        self.shards.iter().map(|s| s.pending.len()).sum()
    }

    /// Whether free shard `s` must send now.
    fn is_due(&self, s: &ShardQueue, max: usize, now: Instant) -> bool {
        !s.busy
            && !s.pending.is_empty()
            && (self.closed
                || s.pending.has_critical()
                || s.pending.len() >= max
                || s.pending
                    .oldest()
                    .is_some_and(|t| t + self.shared.opts.batch_send_deadline <= now))
    }

    /// Cuts every due request (see the module docs) and starts delivering it.
    fn start_due_requests(&mut self) {
        let max = self.shared.opts.max_samples_per_send.max(1);
        let now = Instant::now();
        let due: SmallVec<[usize; 8]> = (0..self.shards.len())
            .filter(|&i| self.is_due(&self.shards[i], max, now))
            .collect();
        if due.is_empty() {
            return;
        }
        let pending: usize = self.shards.iter().map(|s| s.pending.len()).sum();
        let mut cut = RequestCut::with_capacity(pending.min(max));
        let mut held = ShardSet::new();
        for i in due {
            self.take(i, max, &mut cut, &mut held);
            if cut.len() >= max {
                let next = RequestCut::with_capacity(max);
                self.start(std::mem::replace(&mut cut, next), std::mem::take(&mut held));
            }
        }
        if cut.is_empty() {
            return;
        }
        for i in 0..self.shards.len() {
            if cut.len() >= max {
                break;
            }
            let shard = &self.shards[i];
            if !shard.busy && !shard.pending.is_empty() {
                self.take(i, max, &mut cut, &mut held);
            }
        }
        self.start(cut, held);
    }

    /// Moves the oldest pending samples of shard `i` into `cut` (up to `max` in all); the shard is busy
    /// from now until the request ends, even if some of its samples are left for the next one.
    fn take(&mut self, i: usize, max: usize, cut: &mut RequestCut, held: &mut ShardSet) {
        let shard = &mut self.shards[i];
        shard.pending.take_into(max - cut.len(), cut);
        shard.busy = true;
        held.push(i);
    }

    /// Encodes `cut` and delivers it in its own task; the shards in `held` stay busy until it ends.
    fn start(&mut self, mut cut: RequestCut, held: ShardSet) {
        let shared = self.shared.clone();
        let transport = self.transport.clone();
        let samples = cut.len();
        let first_shard = held.first().copied().unwrap_or(0);
        let receipts = cut.take_receipts();
        let task = tokio::spawn(async move {
            let (stats, body) = encode_body(&mut cut);
            let body_len = body.len();
            let outcome = deliver(
                &*transport,
                body,
                &shared.opts,
                shared.remote_timeout,
                &shared.metrics,
                &shared.cancel,
                first_shard,
            )
            .await;
            for (receipt, n) in &receipts {
                match &outcome {
                    Delivery::Delivered => receipt.delivered(*n),
                    Delivery::Rejected { .. } => receipt.dropped(*n),
                    Delivery::Cancelled => {}
                }
            }
            match outcome {
                Delivery::Delivered => {
                    shared.metrics.delivered(&stats, body_len);
                    shared
                        .delivered
                        .fetch_add(stats.samples as u64, Ordering::Relaxed);
                }
                Delivery::Rejected { status, detail } => {
                    shared.dropped_because(DropReason::Http(status), stats.samples, &detail);
                }
                Delivery::Cancelled => shared.dropped(DropReason::Shutdown, stats.samples),
            }
            shared.release(stats.samples);
        });
        let shared = self.shared.clone();
        self.in_flight.push(Box::pin(async move {
            if let Err(e) = task.await {
                // The task panicked or the runtime is going away: it never settled its samples, so
                // their room is given back here and they are counted as dropped.
                tracing::error!(error = %e, "remote-write delivery task ended early");
                shared.release(samples);
                shared.dropped(DropReason::Shutdown, samples);
            }
            held
        }));
    }

    /// At the shutdown deadline: everything pending or still in the channel is dropped and counted.
    fn drop_remaining(&mut self) {
        let mut n: usize = self.shards.iter_mut().map(|s| s.pending.clear()).sum();
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            n += msg.samples();
        }
        self.shared.release(n);
        self.shared.dropped(DropReason::Shutdown, n);
    }
}

thread_local! {
    /// Each worker thread's scratch for a request body: the encoded `WriteRequest`, its snappy output,
    /// and the encoder's hash table. Encoding and compressing run before the delivery task's first
    /// await, so one thread never has two bodies in flight here.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>, snap::raw::Encoder)> =
        std::cell::RefCell::new((Vec::new(), Vec::new(), snap::raw::Encoder::new()));
}

/// Scratch larger than this after a request (an unusually large one) is given back.
const SCRATCH_KEEP_BYTES: usize = 8 << 20;

/// Encodes and compresses `cut` into a body of exactly its compressed size (a body-sized buffer per
/// request, zeroed and grown by doubling, was ~8 % of the agent's CPU).
fn encode_body(cut: &mut RequestCut) -> (RequestStats, Bytes) {
    SCRATCH.with_borrow_mut(|(raw, packed, encoder)| {
        raw.clear();
        let stats = cut.encode(raw);
        let body = Bytes::copy_from_slice(surge_proto::remote_write::compress_into(
            raw, encoder, packed,
        ));
        if raw.capacity() > SCRATCH_KEEP_BYTES {
            *raw = Vec::new();
            *packed = Vec::new();
        }
        (stats, body)
    })
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
