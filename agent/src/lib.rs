//! The surge agent: discover → scrape → parse → relabel → queue → ship.
//!
//! - [`scrape`]: targets, the per-target loop (written once: interval, slot, deadline, shutdown), fetching
//!   with size and time bounds, and the processor that turns a body into samples with staleness.
//! - [`relabel`]: Prometheus relabeling, for targets, metrics and remote-write.
//! - [`server`]: the agent's own `/metrics`, `/healthz`, `/readyz`, `/api/v1/targets`.
//!
//! Architecture invariant: nothing on the scrape path waits for a shipper. A full queue drops and counts;
//! a slow destination never delays the next scrape.

pub mod agent;
pub mod from_config;
pub mod metrics;
pub mod relabel;
pub mod scrape;
pub mod server;

/// The HTTP client used for scraping and shipping: rustls with the ring provider (no OpenSSL, no
/// aws-lc build), HTTP/1.1 keep-alive, no proxy lookup.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    // Installing twice is harmless: the second call just reports the first provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .user_agent(concat!("surge/", env!("CARGO_PKG_VERSION")))
        .build()
}
