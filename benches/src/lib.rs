//! surge's benchmarks. Two kinds live here:
//!
//! - criterion benches of the hot paths (`benches/*.rs`, `cargo bench -p surge-benches`), each with its
//!   `Throughput` and, where one exists, its peer beside it;
//! - the `surge bench` harness (this library): whole processes measured from outside, beside the
//!   strongest peer in the same run. [`agent`] runs the agent beside Prometheus agent mode and vmagent,
//!   [`ingest`] the aggregator's ingest and query path beside VictoriaMetrics, [`latency`] scrape →
//!   decision through agent and aggregator processes. The `surge` binary only parses their arguments.

pub mod agent;
pub mod ingest;
pub mod latency;
pub mod proc;
