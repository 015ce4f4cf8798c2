//! A shard's pending samples and how a request is cut from them.
//!
//! Pending series wait in arrival (FIFO) order. A request takes the oldest samples first, at most
//! `max_samples_per_send`, and merges the samples of one series into one `TimeSeries` in time order. Since
//! a shard sends one request at a time and always from the front, every series leaves in arrival order,
//! request after request.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use surge_model::{Sample, Tier};
use tokio::time::Instant;

use super::{Batch, SeriesMeta};

/// One series of one submitted batch, waiting in a shard.
#[derive(Debug, Clone)]
pub(crate) struct PendingEntry {
    batch: Arc<Batch>,
    /// Index of the series in `batch.series` (its samples are read from there, never copied).
    idx: usize,
    /// The outgoing identity (after relabeling).
    series: SeriesMeta,
    /// Samples of this entry already put into a request.
    taken: usize,
    enqueued_at: Instant,
}

impl PendingEntry {
    pub(crate) fn new(
        batch: Arc<Batch>,
        idx: usize,
        series: SeriesMeta,
        enqueued_at: Instant,
    ) -> Self {
        PendingEntry {
            batch,
            idx,
            series,
            taken: 0,
            enqueued_at,
        }
    }

    fn remaining(&self) -> &[Sample] {
        self.batch
            .series
            .get(self.idx)
            .and_then(|s| s.samples.get(self.taken..))
            .unwrap_or_default()
    }

    fn tier(&self) -> Tier {
        self.batch.tier
    }
}

/// What `submit` hands to one shard: the batch's series routed to it.
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
        self.entries.iter().map(|e| e.remaining().len()).sum()
    }
}

/// What went into one request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RequestStats {
    pub(crate) samples: usize,
    pub(crate) series: usize,
    /// The newest sample timestamp in the request (ms).
    pub(crate) highest_timestamp_ms: Option<i64>,
}

/// A shard's FIFO of pending series.
#[derive(Debug, Default)]
pub(crate) struct PendingQueue {
    entries: VecDeque<PendingEntry>,
    samples: usize,
    critical: usize,
    /// Scratch space reused across requests: series in first-seen order and their samples.
    groups: Vec<(SeriesMeta, Vec<Sample>)>,
    group_of: HashMap<u64, usize>,
}

impl PendingQueue {
    pub(crate) fn push(&mut self, msg: ShardMsg) {
        for e in msg.entries {
            let n = e.remaining().len();
            if n == 0 {
                continue;
            }
            self.samples += n;
            if e.tier() == Tier::Critical {
                self.critical += n;
            }
            self.entries.push_back(e);
        }
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

    /// Appends a `WriteRequest` body of the oldest `max_samples` pending samples (at least one) to `out`,
    /// one `TimeSeries` per series with its samples in time order, series in first-seen order.
    pub(crate) fn take_request(&mut self, max_samples: usize, out: &mut Vec<u8>) -> RequestStats {
        let mut budget = max_samples.max(1);
        while budget > 0 {
            let Some(front) = self.entries.front_mut() else {
                break;
            };
            let avail = front.remaining();
            let k = avail.len().min(budget);
            let group = match self.group_of.get(&front.series.hash()) {
                // Equal hashes with different labels (a 64-bit collision) must not merge.
                Some(&g) if self.groups[g].0.label_block() == front.series.label_block() => g,
                _ => {
                    self.group_of.insert(front.series.hash(), self.groups.len());
                    self.groups.push((front.series.clone(), Vec::new()));
                    self.groups.len() - 1
                }
            };
            self.groups[group].1.extend_from_slice(&avail[..k]);
            budget -= k;
            self.samples -= k;
            if front.tier() == Tier::Critical {
                self.critical -= k;
            }
            front.taken += k;
            if front.remaining().is_empty() {
                self.entries.pop_front();
            }
        }

        let mut stats = RequestStats::default();
        for (series, samples) in self.groups.drain(..) {
            let mut samples = samples;
            // Arrival order is time order when the scrape loop behaves; a stable sort makes it certain
            // within the request without reordering equal timestamps.
            samples.sort_by_key(|s| s.timestamp_ms);
            surge_proto::remote_write::encode_series(out, series.label_block(), &samples);
            stats.samples += samples.len();
            stats.series += 1;
            let newest = samples.last().map(|s| s.timestamp_ms);
            stats.highest_timestamp_ms = stats.highest_timestamp_ms.max(newest);
        }
        self.group_of.clear();
        stats
    }
}
