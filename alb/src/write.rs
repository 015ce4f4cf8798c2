//! Samples into the store through the remote-write ingest path ([`AggregatorState::ingest_body`]): the
//! same validation, limits, counters and observers as an agent's write, so nothing downstream can tell
//! (or needs to know) where a series came from.

use surge_aggregator::ingest::RequestError;
use surge_aggregator::{AggregatorState, IngestSummary, Sender};
use surge_model::{Labels, Sample};
use surge_proto::remote_write::{compress, encode_label_block, encode_series};

/// One remote-write request being built.
#[derive(Default)]
pub struct WriteBatch {
    raw: Vec<u8>,
    samples: usize,
}

impl WriteBatch {
    /// Adds one series' samples (in time order); nothing when `samples` is empty.
    pub fn push(&mut self, labels: &Labels, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        encode_series(&mut self.raw, &encode_label_block(labels), samples);
        self.samples += samples.len();
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Ingests the batch at `now_ms` (nothing when empty).
    pub fn ingest(
        self,
        state: &AggregatorState,
        sender: Sender,
        now_ms: i64,
    ) -> Result<IngestSummary, RequestError> {
        if self.samples == 0 {
            return Ok(IngestSummary::default());
        }
        let body = compress(&self.raw, &mut snap::raw::Encoder::new());
        state.ingest_body(&body, sender, now_ms)
    }
}
