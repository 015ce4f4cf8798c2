//! Scrape jobs and targets: what to scrape, how often, and with which labels.
//!
//! A [`ScrapeJob`] is one resolved `scrape_configs` entry. Discovery produces target groups; target
//! relabeling turns each address into a [`ScrapeTarget`] with its URL and final labels, exactly as
//! Prometheus does with `__address__`, `__scheme__`, `__metrics_path__` and `__param_*`.

use std::sync::Arc;
use std::time::Duration;

use surge_model::{EscapingScheme, Labels, LabelsBuilder, NameValidationScheme, Tier};

use super::processor::ScrapeLimits;
use crate::relabel::Relabeler;

/// Discovery's output type lives in the model crate (so discovery sources need not depend on the agent);
/// re-exported here so `scrape::target::TargetGroup` keeps working.
pub use surge_model::TargetGroup;

/// One resolved scrape job.
pub struct ScrapeJob {
    pub name: Arc<str>,
    pub tier: Tier,
    pub interval: Duration,
    pub timeout: Duration,
    pub scheme: String,
    pub metrics_path: String,
    pub params: Vec<(String, String)>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub limits: ScrapeLimits,
    pub body_size_limit: usize,
    /// Which metric and label names scraped series may have (`metric_name_validation_scheme`).
    pub name_validation: NameValidationScheme,
    /// How names that are not legacy names are asked for and rewritten (`metric_name_escaping_scheme`).
    pub name_escaping: EscapingScheme,
    pub relabel: Arc<Relabeler>,
    pub metric_relabel: Arc<Relabeler>,
}

/// One endpoint to scrape.
#[derive(Clone)]
pub struct ScrapeTarget {
    pub job: Arc<ScrapeJob>,
    pub url: String,
    /// Final target labels: `job`, `instance` and whatever relabeling kept (no `__` labels).
    pub labels: Labels,
    /// Identity for diffing target sets: the URL and the labels.
    pub key: u64,
}

impl ScrapeTarget {
    /// Offset inside the interval at which this target is scraped, so targets are spread over the interval
    /// instead of all firing at once (Prometheus does the same with a hash of the target).
    pub fn offset(&self) -> Duration {
        let ns = self.job.interval.as_nanos().max(1);
        Duration::from_nanos((u128::from(self.key) % ns) as u64)
    }
}

/// Applies the job's target relabeling to every address of `groups`.
pub fn targets_for_job(job: &Arc<ScrapeJob>, groups: &[TargetGroup]) -> Vec<ScrapeTarget> {
    let mut out = Vec::new();
    for g in groups {
        for addr in &g.targets {
            if let Some(t) = build_target(job, addr, &g.labels) {
                out.push(t);
            }
        }
    }
    out.sort_by_key(|t| t.key);
    out.dedup_by_key(|t| t.key);
    out
}

fn build_target(
    job: &Arc<ScrapeJob>,
    addr: &str,
    group_labels: &[(String, String)],
) -> Option<ScrapeTarget> {
    let mut b = LabelsBuilder::default();
    b.set("job", &*job.name);
    b.set("__address__", addr);
    b.set("__scheme__", job.scheme.as_str());
    b.set("__metrics_path__", job.metrics_path.as_str());
    b.set("__scrape_interval__", humanize(job.interval));
    b.set("__scrape_timeout__", humanize(job.timeout));
    for (k, v) in &job.params {
        b.set(format!("__param_{k}"), v.as_str());
    }
    for (k, v) in group_labels {
        b.set(k.as_str(), v.as_str());
    }
    if !job.relabel.process(&mut b) {
        return None;
    }
    let address = b.get("__address__")?.to_owned();
    if b.get("instance").is_none() {
        b.set("instance", address.as_str());
    }
    let scheme = b.get("__scheme__").unwrap_or("http").to_owned();
    let path = b.get("__metrics_path__").unwrap_or("/metrics").to_owned();
    let mut query = Vec::new();
    for l in b.iter() {
        if let Some(p) = l.name.strip_prefix("__param_") {
            query.push(format!("{}={}", urlencode(p), urlencode(&l.value)));
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    if !query.is_empty() {
        url.push(if path.contains('?') { '&' } else { '?' });
        url.push_str(&query.join("&"));
    }
    b.retain(|l| !l.name.starts_with("__"));
    let labels = b.build();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(url.as_bytes());
    h.update(&labels.hash64().to_le_bytes());
    Some(ScrapeTarget {
        job: job.clone(),
        url,
        labels,
        key: h.digest(),
    })
}

fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
