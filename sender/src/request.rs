//! The shards' pending samples and how a request is cut from them.
//!
//! Each shard's pending series wait in arrival (FIFO) order. A request takes the oldest samples of one or
//! more shards, at most `max_samples_per_send`, and lays them out in time order ([`RequestCut`]). Since a
//! shard is in at most one request at a time and is always taken from the front, every series leaves in
//! arrival order, request after request.

use std::collections::VecDeque;
use std::sync::Arc;

use surge_model::{Sample, Tier};
use tokio::time::Instant;

use super::receipt::Receipt;
use super::{Batch, SeriesMeta};

/// The series of one submitted batch that go to one shard, waiting there.
///
/// One entry per (batch, shard) rather than per series: a scrape of 1,000 series is one entry, not 1,000,
/// each holding a reference to the batch and its receipt (two atomic counts per series and scrape) and
/// moved through the channel and the queue.
#[derive(Debug)]
pub(crate) struct PendingEntry {
    /// The shard of the series (see [`shard_for`](super::shard_for)).
    shard: usize,
    batch: Arc<Batch>,
    /// The series still pending, in reverse batch order (the next one is last, taken with `pop`): each
    /// the index of its samples in `batch.series` (read from there, never copied) and its outgoing
    /// identity (after relabeling).
    series: Vec<(usize, SeriesMeta)>,
    /// Samples of the next series already put into a request.
    taken: usize,
    /// Samples pending in the entry.
    samples: usize,
    enqueued_at: Instant,
    /// The batch's delivery receipt, when the caller tracks it (see [`Receipt`]).
    receipt: Option<Arc<Receipt>>,
}

impl PendingEntry {
    /// `series` in batch order, each with its index in `batch.series`.
    pub(crate) fn new(
        shard: usize,
        batch: Arc<Batch>,
        mut series: Vec<(usize, SeriesMeta)>,
        enqueued_at: Instant,
    ) -> Self {
        series.reverse();
        let samples = series
            .iter()
            .map(|(i, _)| batch.series.get(*i).map_or(0, |s| s.samples.len()))
            .sum();
        PendingEntry {
            shard,
            batch,
            series,
            taken: 0,
            samples,
            enqueued_at,
            receipt: None,
        }
    }

    /// Ties the entry to its batch's receipt: requests carrying its samples report to it.
    pub(crate) fn with_receipt(mut self, receipt: Option<Arc<Receipt>>) -> Self {
        self.receipt = receipt;
        self
    }

    pub(crate) fn shard(&self) -> usize {
        self.shard
    }

    fn tier(&self) -> Tier {
        self.batch.tier
    }
}

/// The not yet taken samples of batch series `idx`.
fn remaining(batch: &Batch, idx: usize, taken: usize) -> &[Sample] {
    batch
        .series
        .get(idx)
        .and_then(|s| s.samples.get(taken..))
        .unwrap_or_default()
}

/// What `submit` hands to the dispatcher: one batch's series, each tagged with its shard.
#[derive(Debug)]
pub(crate) struct ShardMsg {
    entries: Vec<PendingEntry>,
}

impl ShardMsg {
    pub(crate) fn new(entries: Vec<PendingEntry>) -> Self {
        ShardMsg { entries }
    }

    /// Samples carried (each holds one unit of the destination's capacity).
    pub(crate) fn samples(&self) -> usize {
        self.entries.iter().map(|e| e.samples).sum()
    }

    /// The entries with the shard each goes to.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = PendingEntry> {
        self.entries.into_iter()
    }
}

/// What went into one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RequestStats {
    pub(crate) samples: usize,
    /// `TimeSeries` entries in the body.
    pub(crate) series: usize,
    /// The newest sample timestamp in the request (ms).
    pub(crate) highest_timestamp_ms: Option<i64>,
}

/// One shard's FIFO of pending series.
#[derive(Debug, Default)]
pub(crate) struct PendingQueue {
    entries: VecDeque<PendingEntry>,
    samples: usize,
    critical: usize,
}

impl PendingQueue {
    pub(crate) fn push(&mut self, e: PendingEntry) {
        let n = e.samples;
        if n == 0 {
            return;
        }
        self.samples += n;
        if e.tier() == Tier::Critical {
            self.critical += n;
        }
        self.entries.push_back(e);
    }

    /// Samples pending.
    pub(crate) fn len(&self) -> usize {
        self.samples
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// Whether critical-tier samples are pending (they are sent without waiting for a timer).
    pub(crate) fn has_critical(&self) -> bool {
        self.critical > 0
    }

    /// When the oldest pending sample arrived.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.enqueued_at)
    }

    /// Removes everything pending and returns the number of samples removed.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.samples;
        self.entries.clear();
        self.samples = 0;
        self.critical = 0;
        n
    }

    /// Moves the oldest `max_samples` pending samples (fewer if fewer are pending) into `cut`; returns how
    /// many moved.
    pub(crate) fn take_into(&mut self, max_samples: usize, cut: &mut RequestCut) -> usize {
        let mut budget = max_samples;
        while budget > 0 {
            let Some(front) = self.entries.front_mut() else {
                break;
            };
            let moved = take_from_entry(front, budget, cut);
            budget -= moved;
            self.samples -= moved;
            if front.tier() == Tier::Critical {
                self.critical -= moved;
            }
            if let Some(r) = &front.receipt {
                cut.receipts.push((r.clone(), moved));
            }
            if front.samples == 0 || front.series.is_empty() {
                // (Both at once, always: `samples` counts what `series` holds. The second guards the
                // loop against an entry that could give nothing.)
                self.entries.pop_front();
            }
        }
        max_samples - budget
    }
}

/// Moves up to `budget` samples of `e`, series by series, into `cut`; returns how many moved.
fn take_from_entry(e: &mut PendingEntry, budget: usize, cut: &mut RequestCut) -> usize {
    let mut moved = 0;
    while moved < budget {
        let Some((idx, _)) = e.series.last() else {
            break;
        };
        let avail = remaining(&e.batch, *idx, e.taken);
        let k = avail.len().min(budget - moved);
        cut.push_samples(&avail[..k]);
        moved += k;
        if k == avail.len() {
            // The usual case: the series leaves whole, so its identity moves into the cut rather than
            // being cloned (a reference count on a cold cache line).
            if let Some((_, series)) = e.series.pop() {
                cut.series.push(series);
            }
            e.taken = 0;
        } else {
            e.taken += k;
            if let Some((_, series)) = e.series.last() {
                cut.series.push(series.clone());
            }
        }
    }
    e.samples -= moved;
    moved
}

/// The samples of one request being cut (from one shard's queue or several), encoded by
/// [`RequestCut::encode`].
///
/// The body is in time order as a reader walks it, `TimeSeries` by `TimeSeries` (the way the compliance
/// suite reads it): the samples are stably sorted by timestamp, and each run of consecutive samples of one
/// series becomes one `TimeSeries`. A request cut from one scrape (one timestamp) therefore holds one
/// `TimeSeries` per series, in scrape order; a request spanning two scrapes holds each series twice,
/// first scrape first. Stable, so a series' samples keep their arrival order (which is its time order).
#[derive(Debug, Default)]
pub(crate) struct RequestCut {
    /// The series taken, one per piece (a piece is one pending entry's samples).
    series: Vec<SeriesMeta>,
    /// Each sample with the index of its piece in `series`.
    samples: Vec<(Sample, u32)>,
    /// Scratch for one run's samples.
    run: Vec<Sample>,
    /// The receipts of tracked batches with the number of their samples in this cut.
    receipts: Vec<(Arc<Receipt>, usize)>,
}

impl RequestCut {
    /// A cut sized for `samples` (one entry per sample, and at most as many pieces), so taking does not
    /// grow it by doubling.
    pub(crate) fn with_capacity(samples: usize) -> Self {
        RequestCut {
            series: Vec::with_capacity(samples),
            samples: Vec::with_capacity(samples),
            ..RequestCut::default()
        }
    }

    /// Adds the samples of the next piece; its series must be pushed to `series` right after.
    fn push_samples(&mut self, samples: &[Sample]) {
        let piece = self.series.len() as u32;
        self.samples.extend(samples.iter().map(|s| (*s, piece)));
    }

    /// The receipts of the tracked samples in the cut, taken out so the request can settle them when
    /// it ends.
    pub(crate) fn take_receipts(&mut self) -> Vec<(Arc<Receipt>, usize)> {
        std::mem::take(&mut self.receipts)
    }

    /// Samples taken so far.
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Appends the `WriteRequest` body to `out` and empties the cut for reuse.
    pub(crate) fn encode(&mut self, out: &mut Vec<u8>) -> RequestStats {
        // Already sorted in the usual case (one scrape, one timestamp), which a stable sort checks in
        // one pass.
        self.samples.sort_by_key(|(s, _)| s.timestamp_ms);
        let mut stats = RequestStats {
            samples: self.samples.len(),
            series: 0,
            highest_timestamp_ms: self.samples.last().map(|(s, _)| s.timestamp_ms),
        };
        let mut i = 0;
        while let Some(&(_, piece)) = self.samples.get(i) {
            let series = &self.series[piece as usize];
            self.run.clear();
            let mut last_ts = None;
            while let Some(&(s, p)) = self.samples.get(i) {
                // A series has one sample per timestamp, so a sample at the run's last timestamp from
                // another piece is another series: the label blocks (cold memory) are compared only
                // when a later sample could continue the run.
                if p != piece
                    && (last_ts == Some(s.timestamp_ms)
                        || !self.series[p as usize].same_series(series))
                {
                    break;
                }
                last_ts = Some(s.timestamp_ms);
                self.run.push(s);
                i += 1;
            }
            surge_proto::remote_write::encode_series(out, series.label_block(), &self.run);
            stats.series += 1;
        }
        self.series.clear();
        self.samples.clear();
        stats
    }
}
