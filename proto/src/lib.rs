//! Wire formats, and the only crate that knows them.
//!
//! - [`exposition`]: Prometheus text 0.0.4 and OpenMetrics 1.0 text, parsed zero-copy.
//! - [`remote_write`]: Prometheus remote-write 1.0 (protobuf + snappy block), encoded from pre-encoded label
//!   blocks and decoded without per-sample allocation.
//!
//! Architecture invariant: validation happens on conversion. Anything that leaves this crate as a model
//! type has sorted, unique, valid labels.

pub mod exposition;
pub mod remote_write;
