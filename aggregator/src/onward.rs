//! Onward remote-write: what the aggregator ingests is also shipped to long-term stores (Mimir, Thanos
//! Receive, VictoriaMetrics, Prometheus) through the same output seam the agent uses, so history lives in an
//! existing distributed store while the aggregator keeps only the hot window.

use std::collections::HashMap;

use parking_lot::Mutex;
use surge_model::{Labels, Tier};
use surge_proto::remote_write::for_each_series;
use surge_sender::{Batch, Outputs, SeriesMeta, SeriesSamples};

use surge_store::{IngestObserver, Touched};

use crate::now_ms;

/// Series identities kept for re-encoding; beyond this the map is cleared (a cache, not state).
const MAX_CACHED_SERIES: usize = 1 << 20;

/// Forwards every applied write request to the onward destinations.
pub struct Onward {
    outputs: Outputs,
    series: Mutex<HashMap<u64, Option<SeriesMeta>>>,
}

impl Onward {
    pub fn new(outputs: Outputs) -> Self {
        Onward {
            outputs,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The outputs, for an orderly shutdown.
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// The series' identity, built once; `None` for a label set without a metric name (never forwarded).
    fn meta(&self, raw_hash: u64, labels: impl FnOnce() -> Labels) -> Option<SeriesMeta> {
        let mut map = self.series.lock();
        if let Some(m) = map.get(&raw_hash) {
            return m.clone();
        }
        if map.len() >= MAX_CACHED_SERIES {
            map.clear();
        }
        let labels = labels();
        let m = labels
            .metric_name()
            .is_some()
            .then(|| SeriesMeta::new(labels));
        map.insert(raw_hash, m.clone());
        m
    }
}

impl IngestObserver for Onward {
    fn on_ingest(&self, _touched: &[Touched]) {}

    fn on_write_request(&self, decompressed: &[u8]) {
        if self.outputs.is_empty() {
            return;
        }
        let mut series = Vec::new();
        // The body was validated by ingest already; a failure here only means nothing is forwarded.
        let _ = for_each_series(decompressed, |s| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for (n, v) in s.labels() {
                h.update(n.as_bytes());
                h.update(&[0xff]);
                h.update(v.as_bytes());
                h.update(&[0xff]);
            }
            let Some(meta) = self.meta(h.digest(), || Labels::from_pairs(s.labels())) else {
                return Ok::<(), ()>(());
            };
            let samples: surge_sender::Samples = s.samples().collect();
            if !samples.is_empty() {
                series.push(SeriesSamples {
                    series: meta,
                    samples,
                });
            }
            Ok(())
        });
        // History stores do not need sub-second delivery: the standard tier batches efficiently.
        self.outputs.submit(Batch {
            tier: Tier::Standard,
            series,
            scrape_end_ms: now_ms(),
        });
    }
}
