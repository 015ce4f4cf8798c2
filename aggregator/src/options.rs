//! The ingest endpoint's limits: a plain struct; the binary maps `surge-config` onto it.

use std::time::Duration;

/// Limits of the remote-write endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOptions {
    /// The largest compressed request body accepted; larger bodies answer 413.
    pub max_body_bytes: usize,
    /// The largest decompressed body accepted (snappy announces the size first, so this is checked before
    /// allocating); larger bodies answer 413.
    pub max_decompressed_bytes: usize,
    /// Samples with timestamps further than this in the future are rejected and counted.
    pub max_future: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            max_body_bytes: 32 << 20,
            max_decompressed_bytes: 128 << 20,
            max_future: Duration::from_secs(10 * 60),
        }
    }
}
