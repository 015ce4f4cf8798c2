//! [`DurableOutput`]: the durable queue in front of a remote-write sender, behind the output seam.
//!
//! ```text
//! submit ─ seq ─────────┬─▶ writer thread: encode, write(2) to the active segment, fsync by policy, cursor
//!                       └─▶ caught up? sender.submit_tracked (from memory)  else  memory window / disk
//! pump task: acks ─▶ cursor (first unacknowledged seq) ─▶ writer;  backlog ─▶ sender, memory first, then disk
//! ```
//!
//! - **The disk is off the send path while the destination is healthy.** `submit` numbers the batch,
//!   hands the same `Arc<Batch>` to the writer thread (which encodes, checksums and writes the record)
//!   and, when nothing older is waiting, to the sender at once. Persisting runs beside the send; the
//!   submit path only sums the record's length for the disk budget ([`record::encoded_len`]): no
//!   encoding, no copy, no allocation per record, so its p99 is not a memory copy of the whole batch.
//!   Durability is unchanged: a batch was never on disk when `submit` returned (`write(2)` happens on
//!   the writer thread at once, `fsync` by policy: `always` after each write, `batch` every interval,
//!   `never`), and a kill before the write loses what was only in memory either way.
//! - **Order.** Batches get rising sequence numbers and reach the sender strictly in that order (live
//!   sends happen under the core lock, only when every older batch has been handed over), so each
//!   series stays in time order across an outage and a restart.
//! - **Ack path.** Each batch goes through [`RemoteWriteSender::submit_tracked`]; its outcome arrives on a
//!   channel to the pump, which marks the batch settled and moves the cursor over every settled batch
//!   in a row. The writer thread persists the cursor and deletes segments wholly below it. A batch the
//!   sender gave up on for good (4xx) is settled: the sender counted it. A batch cancelled by shutdown is
//!   not: it stays on disk and is sent again after the restart.
//! - **Outage.** The sender holds at most `window` samples in flight (half its capacity, so it never
//!   drops `queue_full`); newer batches wait in a memory window of `memory_samples`, and past that on
//!   disk only. When the destination is back the pump sends the backlog in order, from memory where it
//!   still is, otherwise read back from the segment files.
//! - **Restart.** The cursor and the segments are read back (see [`Log::open`]); everything at or after
//!   the cursor is sent before anything new. Duplicates are limited to batches that were delivered
//!   but whose acknowledgement had not reached the cursor file (those in flight at the kill).
//! - **Disk budget.** `max_bytes` bounds the segment files. `drop_oldest`: the writer deletes the oldest
//!   segment and counts its unsent samples as dropped (`reason="wal_full"`). `backpressure`: `submit`
//!   refuses new batches while the budget is used up, keeping the oldest (`reason="wal_full"`); the
//!   output contract forbids blocking the scrape loop, so scraping is not slowed down, new samples are
//!   refused at the queue instead (and the target's scrape still reports `up`).
//! - **Disk errors** (e.g. `ENOSPC`): a record that could not be written is counted as dropped
//!   (`reason="disk_error"`) unless it was already sent from memory; the queue keeps running.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use parking_lot::Mutex;
use surge_sender::{
    Batch, BatchOutcome, Output, RemoteWriteSender, ShutdownFuture, ShutdownReport,
};
use tokio::sync::Notify;

use crate::log::{FsyncPolicy, Log, LogReader, ReadOutcome, Recovery};
use crate::metrics::{DestinationMetrics, WalMetrics};
use crate::record;

/// What happens when the disk budget is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Delete the oldest segment; its unsent samples are counted as dropped.
    DropOldest,
    /// Refuse new batches (counted as dropped) and keep the oldest.
    Backpressure,
}

/// Options of one durable queue.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableOptions {
    /// Its own directory (one per destination).
    pub dir: PathBuf,
    /// The bound on segment bytes on disk.
    pub max_bytes: u64,
    /// A segment is closed and a new one started past this size; the unit of `drop_oldest`.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub when_full: WhenFull,
    /// Samples kept in memory beyond those in flight, so a short outage replays without reading disk.
    pub memory_samples: usize,
}

impl DurableOptions {
    /// Options for `dir` with the defaults: 1 GiB, 16 MiB segments (at most an eighth of `max_bytes`),
    /// fsync once per second, `drop_oldest`, 100 000 samples in memory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DurableOptions {
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            fsync: FsyncPolicy::Batch(Duration::from_secs(1)),
            when_full: WhenFull::DropOldest,
            memory_samples: 100_000,
        }
    }

    fn segment_bytes(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes / 8).max(4096)
    }
}

/// A remote-write destination with a durable queue in front; see the module docs.
pub struct DurableOutput {
    inner: Arc<Inner>,
    tasks: Mutex<Option<(tokio::task::JoinHandle<()>, std::thread::JoinHandle<()>)>>,
}

struct Inner {
    name: String,
    sender: RemoteWriteSender,
    core: Mutex<Core>,
    writer: Mutex<Option<mpsc::Sender<WriterMsg>>>,
    acks: tokio::sync::mpsc::UnboundedSender<(u64, BatchOutcome)>,
    wake: Notify,
    /// Every sequence number below this has been written (or failed to be written).
    persisted: AtomicU64,
    /// Bytes encoded by `submit` and not yet written.
    pending_bytes: AtomicU64,
    disk_bytes: AtomicU64,
    max_bytes: u64,
    when_full: WhenFull,
    window: usize,
    memory_samples: usize,
    closed: AtomicBool,
    metrics: DestinationMetrics,
}

/// The ordering state, under one lock.
struct Core {
    /// The sequence number the next submitted batch gets.
    next_seq: u64,
    /// The next sequence number to hand to the sender.
    send_next: u64,
    /// Batches not yet handed to the sender and still in memory (the newest of the backlog).
    mem: VecDeque<(u64, Arc<Batch>)>,
    mem_samples: usize,
    /// Samples handed to the sender and not yet settled.
    inflight: usize,
    /// The cursor: the first sequence number not settled.
    acked: u64,
    /// Settled sequence numbers above the cursor.
    settled: BTreeSet<u64>,
    /// Samples accepted and not yet acknowledged (the backlog gauge).
    backlog: u64,
    /// Samples of each accepted batch not yet settled, by sequence number: what a record lost on disk
    /// held, so its loss is counted in samples.
    sizes: std::collections::BTreeMap<u64, u32>,
    /// Of batches not yet handed to the sender, how many trailing series are health series (see
    /// [`Output::submit_with_health`]); only batches that have some. Kept in memory only: a batch read
    /// back after a restart is sent without the health room, which the window (half the sender's
    /// capacity in flight) leaves unused anyway.
    health: std::collections::BTreeMap<u64, u32>,
}

enum WriterMsg {
    /// Batch `seq`, whose record is `len` bytes ([`record::encoded_len`]), to encode and write.
    Append {
        seq: u64,
        batch: Arc<Batch>,
        len: u64,
        samples: u32,
    },
    Ack(u64),
    Flush(std::sync::mpsc::SyncSender<()>),
}

impl DurableOutput {
    /// Opens the queue in `opts.dir` (replaying what a previous run left unacknowledged) and starts its
    /// writer thread and pump task in front of `sender` (needs a tokio runtime). Fails only if the
    /// directory cannot be created or listed; bad content is skipped and counted.
    pub fn start(
        opts: DurableOptions,
        sender: RemoteWriteSender,
        capacity: usize,
        metrics: &WalMetrics,
    ) -> std::io::Result<(Arc<Self>, Recovery)> {
        let name = Output::name(&sender).to_owned();
        let (log, rec) = Log::open(&opts.dir, opts.segment_bytes(), opts.fsync)?;
        let metrics = metrics.destination(&name);
        metrics.corrupt_bytes.inc_by(rec.corrupt_bytes);
        metrics.lost_batches.inc_by(rec.lost_batches);
        metrics.disk_bytes.set(log.bytes() as i64);
        metrics.backlog.set(rec.pending_samples as i64);
        let next_seq = log.next_seq();
        let index = log.index();
        let (ack_tx, ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let (writer_tx, writer_rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            name,
            sender,
            core: Mutex::new(Core {
                next_seq,
                send_next: rec.acked,
                mem: VecDeque::new(),
                mem_samples: 0,
                inflight: 0,
                acked: rec.acked,
                settled: BTreeSet::new(),
                backlog: rec.pending_samples,
                sizes: log.records_from(rec.acked).into_iter().collect(),
                health: std::collections::BTreeMap::new(),
            }),
            writer: Mutex::new(Some(writer_tx)),
            acks: ack_tx,
            wake: Notify::new(),
            persisted: AtomicU64::new(next_seq),
            pending_bytes: AtomicU64::new(0),
            disk_bytes: AtomicU64::new(log.bytes()),
            max_bytes: opts.max_bytes,
            when_full: opts.when_full,
            window: (capacity / 2).max(1),
            memory_samples: opts.memory_samples,
            closed: AtomicBool::new(false),
            metrics,
        });
        let writer = {
            let inner = inner.clone();
            let every = match opts.fsync {
                FsyncPolicy::Batch(d) => d.max(Duration::from_millis(1)),
                _ => Duration::from_secs(1),
            };
            std::thread::Builder::new()
                .name(format!("wal-{}", inner.name))
                .spawn(move || writer_loop(inner, log, writer_rx, every))?
        };
        let pump = tokio::spawn(pump_loop(inner.clone(), LogReader::new(index), ack_rx));
        inner.wake.notify_one();
        Ok((
            Arc::new(DurableOutput {
                inner,
                tasks: Mutex::new(Some((pump, writer))),
            }),
            rec,
        ))
    }

    /// Samples accepted and not yet acknowledged.
    pub fn backlog_samples(&self) -> u64 {
        self.inner.core.lock().backlog
    }

    /// Bytes of segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.disk_bytes.load(Ordering::Relaxed)
    }

    /// Waits until every record submitted so far is written and synced (tests, shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sent = self
            .inner
            .writer
            .lock()
            .as_ref()
            .is_some_and(|w| w.send(WriterMsg::Flush(tx)).is_ok());
        if sent {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        }
    }
}

impl Output for DurableOutput {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn submit(&self, batch: Arc<Batch>) {
        self.inner.submit(batch, 0);
    }

    fn submit_with_health(&self, batch: Arc<Batch>, health: usize) {
        self.inner.submit(batch, health);
    }

    /// The sender's bound: every batch passes through it, so a scrape it would refuse must be refused
    /// whole here too (with `up` = 0), not accepted and then dropped in part.
    fn max_scrape_samples(&self) -> Option<usize> {
        self.inner.sender.max_scrape_samples().into()
    }

    fn shutdown(&self, deadline: Duration) -> ShutdownFuture<'_> {
        Box::pin(self.close(deadline))
    }
}

impl DurableOutput {
    /// Stops accepting, gives the backlog until `deadline` to drain, shuts the sender down (what it
    /// still holds stays on disk for the next run), then syncs and stops the writer.
    async fn close(&self, deadline: Duration) -> ShutdownReport {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return ShutdownReport {
                completed: true,
                ..ShutdownReport::default()
            };
        }
        let start = tokio::time::Instant::now();
        while start.elapsed() < deadline / 2 && inner.core.lock().backlog > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = deadline.saturating_sub(start.elapsed());
        let report = Output::shutdown(&inner.sender, left).await;
        let tasks = self.tasks.lock().take();
        if let Some((pump, writer)) = tasks {
            // Dropping the writer's channel ends it after a final sync.
            inner.writer.lock().take();
            pump.abort();
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        report
    }
}

impl Inner {
    /// Accepts `batch`, whose last `health` series are health series (`up`, …): they have room of
    /// their own in the sender, and on a full disk under `backpressure` a fiftieth of `max_bytes` (as
    /// the sender's health room is a fiftieth of its capacity), so a target's `up` is never refused
    /// because other targets' volume filled the disk.
    fn submit(&self, mut batch: Arc<Batch>, mut health: usize) {
        let mut n = batch.sample_count();
        if n == 0 {
            return;
        }
        if self.closed.load(Ordering::Acquire) {
            self.metrics.dropped("shutdown", n as u64);
            return;
        }
        let mut len = record::encoded_len(&batch);
        let mut core = self.core.lock();
        let seq = core.next_seq;
        if self.when_full == WhenFull::Backpressure && !self.fits(len, self.max_bytes) {
            let all = batch.series.len();
            health = health.min(all);
            let health_room = self.max_bytes + self.max_bytes / 50;
            let tail = health_tail(&batch, health);
            let kept = tail.sample_count();
            len = record::encoded_len(&tail);
            if health == 0 || !self.fits(len, health_room) {
                drop(core);
                self.metrics.dropped("wal_full", n as u64);
                return;
            }
            // Only the health series are kept; the rest is refused and counted.
            self.metrics.dropped("wal_full", (n - kept) as u64);
            batch = Arc::new(tail);
            n = kept;
        }
        let len = len as u64;
        // Counted before the writer can subtract it, so the budget never reads a wrapped sum.
        self.pending_bytes.fetch_add(len, Ordering::Relaxed);
        let sent = self.writer.lock().as_ref().is_some_and(|w| {
            w.send(WriterMsg::Append {
                seq,
                batch: batch.clone(),
                len,
                samples: n as u32,
            })
            .is_ok()
        });
        if !sent {
            self.pending_bytes.fetch_sub(len, Ordering::Relaxed);
            drop(core);
            self.metrics.dropped("shutdown", n as u64);
            return;
        }
        core.next_seq += 1;
        core.backlog += n as u64;
        core.sizes.insert(seq, n as u32);
        if health > 0 {
            core.health.insert(seq, health as u32);
        }
        self.metrics.appended.inc_by(n as u64);
        if core.send_next == seq && core.mem.is_empty() && core.inflight + n <= self.window.max(n) {
            // Live path: nothing older waits, so send from memory now.
            self.hand_over(&mut core, seq, batch, false);
            self.metrics.backlog.set(core.backlog as i64);
        } else {
            core.mem.push_back((seq, batch));
            core.mem_samples += n;
            while core.mem_samples > self.memory_samples
                && let Some((_, b)) = core.mem.pop_front()
            {
                // It is on disk (or being written): the pump reads it back when its turn comes.
                core.mem_samples -= b.sample_count();
            }
            self.metrics.backlog.set(core.backlog as i64);
            drop(core);
            self.wake.notify_one();
        }
    }

    /// Hands batch `seq` (which must be `send_next`) to the sender. Called under the core lock, so no
    /// other batch can overtake it; the sender's callback only posts to a channel.
    fn hand_over(&self, core: &mut Core, seq: u64, batch: Arc<Batch>, from_disk: bool) {
        let n = batch.sample_count();
        let health = core.health.remove(&seq).map_or(0, |h| h as usize);
        core.send_next = seq + 1;
        core.inflight += n;
        if from_disk {
            self.metrics.replayed.inc_by(n as u64);
        }
        let acks = self.acks.clone();
        self.sender.submit_tracked_with_health(
            batch,
            health,
            Box::new(move |o| {
                let _ = acks.send((seq, o));
            }),
        );
    }

    /// Marks `seq` settled and moves the cursor; returns whether it moved.
    fn settle(&self, core: &mut Core, seq: u64) -> bool {
        let samples = core.sizes.remove(&seq).map_or(0, u64::from);
        core.health.remove(&seq);
        core.backlog = core.backlog.saturating_sub(samples);
        if seq < core.acked {
            return false;
        }
        core.settled.insert(seq);
        let before = core.acked;
        while core.settled.remove(&core.acked) {
            core.acked += 1;
        }
        core.acked != before
    }

    /// Gives up on records the disk no longer holds (an oldest segment dropped, or a write that
    /// failed): those not yet handed to the sender are counted as dropped for `reason` and settled.
    fn discard(&self, records: &[(u64, u32)], reason: &'static str) {
        let mut core = self.core.lock();
        let mut dropped = 0u64;
        let mut moved = false;
        for &(seq, samples) in records {
            if seq < core.send_next {
                // In flight (or already settled): the sender decides its fate.
                continue;
            }
            if let Some(i) = core.mem.iter().position(|(s, _)| *s == seq) {
                if reason == "disk_error" {
                    // Still in memory: it is sent from there, just not durable.
                    continue;
                }
                if let Some((_, b)) = core.mem.remove(i) {
                    core.mem_samples -= b.sample_count();
                }
            }
            dropped += u64::from(samples);
            moved |= self.settle(&mut core, seq);
        }
        // The pump skips settled records when it reaches them.
        let acked = core.acked;
        drop(core);
        self.metrics.dropped(reason, dropped);
        if moved {
            self.send_ack(acked);
        }
        self.wake.notify_one();
    }

    /// Whether `len` more bytes keep the segments (written and being written) within `limit`.
    fn fits(&self, len: usize, limit: u64) -> bool {
        self.disk_bytes.load(Ordering::Relaxed)
            + self.pending_bytes.load(Ordering::Relaxed)
            + len as u64
            <= limit
    }

    fn send_ack(&self, acked: u64) {
        if let Some(w) = self.writer.lock().as_ref() {
            let _ = w.send(WriterMsg::Ack(acked));
        }
    }
}

/// The last `health` series of `batch`, as a batch of their own.
fn health_tail(batch: &Batch, health: usize) -> Batch {
    let from = batch.series.len().saturating_sub(health);
    Batch {
        tier: batch.tier,
        series: batch.series.get(from..).unwrap_or_default().to_vec(),
        scrape_end_ms: batch.scrape_end_ms,
    }
}

/// The pump: settles acknowledgements and feeds the backlog to the sender in order.
async fn pump_loop(
    inner: Arc<Inner>,
    mut reader: LogReader,
    mut acks: tokio::sync::mpsc::UnboundedReceiver<(u64, BatchOutcome)>,
) {
    loop {
        tokio::select! {
            ack = acks.recv() => {
                let Some(first) = ack else { return };
                let mut moved = None;
                {
                    let mut core = inner.core.lock();
                    let mut next = Some(first);
                    while let Some((seq, o)) = next {
                        core.inflight = core.inflight.saturating_sub(o.samples);
                        // Cancelled by shutdown: not settled, so it is sent again after the restart.
                        if o.unsettled() == 0 || !inner.closed.load(Ordering::Acquire) {
                            inner.metrics.acked.inc_by(o.samples as u64);
                            if inner.settle(&mut core, seq) {
                                moved = Some(core.acked);
                            }
                        }
                        next = acks.try_recv().ok();
                    }
                    inner.metrics.backlog.set(core.backlog as i64);
                }
                if let Some(acked) = moved {
                    inner.send_ack(acked);
                }
            }
            _ = inner.wake.notified() => {}
        }
        feed(&inner, &mut reader).await;
    }
}

/// Hands over backlog batches while the sender has room: from memory when the next one is there,
/// otherwise read back from disk (off the async threads).
async fn feed(inner: &Arc<Inner>, reader: &mut LogReader) {
    loop {
        let want = {
            let mut core = inner.core.lock();
            // Skip what was discarded (settled without being sent).
            while core.send_next < core.next_seq
                && (core.send_next < core.acked || core.settled.contains(&core.send_next))
            {
                core.send_next += 1;
            }
            while core.mem.front().is_some_and(|(s, _)| *s < core.send_next) {
                if let Some((_, b)) = core.mem.pop_front() {
                    core.mem_samples -= b.sample_count();
                }
            }
            if core.send_next >= core.next_seq || core.inflight >= inner.window {
                return;
            }
            let want = core.send_next;
            if core.mem.front().is_some_and(|(s, _)| *s == want) {
                if let Some((seq, b)) = core.mem.pop_front() {
                    core.mem_samples -= b.sample_count();
                    inner.hand_over(&mut core, seq, b, false);
                }
                continue;
            }
            want
        };
        if want >= inner.persisted.load(Ordering::Acquire) {
            // Not written yet: the writer wakes the pump when it is.
            return;
        }
        let next_seq = inner.core.lock().next_seq;
        let found = {
            let mut r = std::mem::replace(reader, LogReader::new(Default::default()));
            let res = tokio::task::spawn_blocking(move || {
                let found = r.read(want, next_seq);
                (r, found)
            })
            .await;
            match res {
                Ok((r, found)) => {
                    *reader = r;
                    found
                }
                Err(_) => return,
            }
        };
        let mut core = inner.core.lock();
        if core.send_next != want {
            continue;
        }
        match found {
            ReadOutcome::Batch(b) => inner.hand_over(&mut core, want, Arc::new(b), true),
            ReadOutcome::Missing { next } => {
                // Lost to corruption: counted at open (`surge_wal_lost_batches_total`); move on.
                tracing::warn!(destination = %inner.name, from = want, to = next, "durable queue: records missing on disk, skipped");
                let mut lost = 0;
                for seq in want..next.min(core.next_seq) {
                    if !core.settled.contains(&seq) {
                        lost += core.sizes.get(&seq).map_or(0, |n| u64::from(*n));
                    }
                    inner.settle(&mut core, seq);
                }
                inner.metrics.dropped("corrupt", lost);
                core.send_next = next.max(want + 1);
                let acked = core.acked;
                drop(core);
                inner.send_ack(acked);
            }
        }
    }
}

/// The writer thread: appends what `submit` encoded, enforces the disk budget, persists the cursor and
/// syncs by policy. Ends (after a final sync) when every sender of its channel is gone.
fn writer_loop(inner: Arc<Inner>, mut log: Log, rx: mpsc::Receiver<WriterMsg>, every: Duration) {
    // Reused for every write: its capacity settles at the largest group of records written at once.
    let mut frames = Vec::new();
    let mut records: Vec<(u64, u32)> = Vec::new();
    let mut flushes = Vec::new();
    let mut pending = 0u64;
    loop {
        let first = match rx.recv_timeout(every) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut ack = None;
        let mut next = first;
        while let Some(msg) = next {
            match msg {
                WriterMsg::Append {
                    seq,
                    batch,
                    len,
                    samples,
                } => {
                    record::encode(seq, &batch, &mut frames);
                    records.push((seq, samples));
                    pending += len;
                }
                WriterMsg::Ack(a) => ack = Some(a),
                WriterMsg::Flush(tx) => flushes.push(tx),
            }
            next = rx.try_recv().ok();
        }
        if !records.is_empty() {
            write_records(&inner, &mut log, &frames, &records);
            // What `submit` counted (equal to the frames' length: `encoded_len` is exact).
            debug_assert_eq!(
                pending,
                frames.len() as u64,
                "record::encoded_len is not exact"
            );
            inner.pending_bytes.fetch_sub(pending, Ordering::Relaxed);
            pending = 0;
            if let Some(&(last, _)) = records.last() {
                inner.persisted.store(last + 1, Ordering::Release);
            }
            frames.clear();
            records.clear();
            inner.wake.notify_one();
        }
        if let Some(acked) = ack
            && let Err(e) = log.ack(acked)
        {
            tracing::warn!(destination = %inner.name, error = %e, "durable queue: cursor not written");
        }
        let _ = log.sync_due(!flushes.is_empty());
        inner.disk_bytes.store(log.bytes(), Ordering::Relaxed);
        inner.metrics.disk_bytes.set(log.bytes() as i64);
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
    let _ = log.sync_due(true);
}

/// Makes room under `max_bytes` (when dropping the oldest) and appends; a failed write discards.
fn write_records(inner: &Inner, log: &mut Log, frames: &[u8], records: &[(u64, u32)]) {
    if inner.when_full == WhenFull::DropOldest {
        while log.bytes() + frames.len() as u64 > inner.max_bytes {
            match log.drop_oldest() {
                Ok(Some(seg)) => inner.discard(&seg.records, "wal_full"),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(destination = %inner.name, error = %e, "durable queue: segment not deleted");
                    break;
                }
            }
        }
    }
    if let Err(e) = log.append(frames, records) {
        tracing::warn!(destination = %inner.name, error = %e, "durable queue: records not written");
        inner.discard(records, "disk_error");
    }
}
