//! The durable queue: what a remote-write destination has accepted survives outages, restarts and
//! `kill -9`, within a stated disk budget, and whatever must be given up is counted with a reason.
//!
//! - [`record`]: one batch as a length-prefixed, CRC-32C-checked record.
//! - [`log`]: segment files with a header, the persisted cursor, the open-time scan that skips (and
//!   counts) corrupt or truncated data instead of failing.
//! - [`durable`]: [`DurableOutput`], an [`Output`](surge_sender::Output) that sends from memory while
//!   the destination is healthy, persists beside it, and replays from disk after an outage or restart.

pub mod durable;
pub mod log;
mod metrics;
pub mod record;

pub use durable::{DurableOptions, DurableOutput, WhenFull};
pub use log::{FsyncPolicy, Log, LogReader, ReadOutcome, Recovery};
pub use metrics::WalMetrics;
