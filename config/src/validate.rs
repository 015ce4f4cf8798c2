//! Checks on a parsed config that serde cannot express. Every problem is collected, each with the path
//! of the field it is about; the loader turns paths into positions.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;

use surge_model::{EscapingScheme, NameValidationScheme, is_valid_label_name};

use crate::Config;
use crate::agent::{AgentConfig, FileSdConfig, ScrapeConfig, TargetGroupConfig, TiersConfig};
use crate::aggregator::AggregatorConfig;
use crate::duration::format_duration;
use crate::path::FieldPath;
use crate::relabel::RelabelConfig;
use crate::remote_write::RemoteWriteConfig;

/// A problem found by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub path: FieldPath,
    /// Point at the key rather than the value (a bad label name is in the key).
    pub on_key: bool,
    pub message: String,
}

#[derive(Default)]
pub(crate) struct Problems {
    pub list: Vec<Problem>,
}

impl Problems {
    fn add(&mut self, path: FieldPath, message: impl Into<String>) {
        self.list.push(Problem {
            path,
            on_key: false,
            message: message.into(),
        });
    }

    fn add_on_key(&mut self, path: FieldPath, message: impl Into<String>) {
        self.list.push(Problem {
            path,
            on_key: true,
            message: message.into(),
        });
    }

    fn positive(&mut self, path: FieldPath, d: Duration) {
        if d.is_zero() {
            self.add(path, "must be above 0s");
        }
    }

    fn nonzero(&mut self, path: FieldPath, n: u64) {
        if n == 0 {
            self.add(path, "must be above 0");
        }
    }
}

pub(crate) fn validate(config: &Config) -> Vec<Problem> {
    let mut p = Problems::default();
    let root = FieldPath::root();
    agent(&mut p, &root.key("agent"), &config.agent);
    aggregator(&mut p, &root.key("aggregator"), &config.aggregator);
    p.list
}

fn agent(p: &mut Problems, at: &FieldPath, a: &AgentConfig) {
    labels(p, &at.key("external_labels"), &a.external_labels);
    tiers(p, &at.key("tiers"), &a.tiers);
    let mut jobs: HashMap<&str, usize> = HashMap::new();
    for (i, s) in a.scrape_configs.iter().enumerate() {
        let at = at.key("scrape_configs").index(i);
        scrape(p, &at, s);
        if s.job_name.is_empty() {
            continue;
        }
        if let Some(first) = jobs.insert(&s.job_name, i) {
            p.add(
                at.key("job_name"),
                format!(
                    "job_name {:?} is already used by agent.scrape_configs[{first}]",
                    s.job_name
                ),
            );
            jobs.insert(&s.job_name, first);
        }
    }
    remote_writes(p, &at.key("remote_write"), &a.remote_write);
    cloudwatch_outputs(p, at, a);
    otlps(p, &at.key("otlp"), &a.otlp, &a.remote_write);
}

/// `emf` and `cloudwatch`: each entry's own checks (beside the types, in cloudwatch.rs) and unique
/// names across both lists (a name is the `destination` label of the sender's metrics).
fn cloudwatch_outputs(p: &mut Problems, at: &FieldPath, a: &AgentConfig) {
    let mut names: HashMap<&str, String> = HashMap::new();
    let entries = a
        .emf
        .iter()
        .map(|e| ("emf", e.name.as_str(), e.problems()))
        .chain(
            a.cloudwatch
                .iter()
                .map(|c| ("cloudwatch", c.name.as_str(), c.problems())),
        );
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (list, name, problems) in entries {
        let i = index.entry(list).or_insert(0);
        let at = at.key(list).index(*i);
        *i += 1;
        for (field, message) in problems {
            p.add(at.join(&field), message);
        }
        if name.is_empty() {
            continue;
        }
        let here = format!("{list}[{}]", *i - 1);
        if let Some(first) = names.get(name) {
            p.add(
                at.key("name"),
                format!("name {name:?} is already used by {first}"),
            );
        } else {
            names.insert(name, here);
        }
    }
}

/// The OTLP destinations: each entry's own checks (beside the type, in otlp.rs) and unique names.
fn otlps(
    p: &mut Problems,
    at: &FieldPath,
    outputs: &[crate::otlp::OtlpConfig],
    remote_writes: &[RemoteWriteConfig],
) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, o) in outputs.iter().enumerate() {
        let at = at.index(i);
        for (field, message) in o.problems() {
            p.add(at.join(&field), message);
        }
        if let Some(first) = names.insert(&o.name, i) {
            p.add(
                at.key("name"),
                format!("name {:?} is already used by otlp[{first}]", o.name),
            );
            names.insert(&o.name, first);
        } else if let Some(rw) = remote_writes.iter().position(|rw| rw.name == o.name) {
            // Both kinds count in the same metric families, by `destination`.
            p.add(
                at.key("name"),
                format!("name {:?} is already used by remote_write[{rw}]", o.name),
            );
        }
    }
}

fn tiers(p: &mut Problems, at: &FieldPath, t: &TiersConfig) {
    for (name, tier) in [("critical", t.critical), ("standard", t.standard)] {
        let at = at.key(name);
        p.positive(at.key("interval"), tier.interval);
        p.positive(at.key("timeout"), tier.timeout);
        if tier.timeout > tier.interval {
            p.add(
                at.key("timeout"),
                format!(
                    "timeout {} is longer than interval {}",
                    format_duration(tier.timeout),
                    format_duration(tier.interval)
                ),
            );
        }
    }
}

fn scrape(p: &mut Problems, at: &FieldPath, s: &ScrapeConfig) {
    if s.job_name.is_empty() {
        p.add(at.clone(), "job_name is required");
    }
    let (interval, timeout) = (s.interval(), s.timeout());
    p.positive(at.key("interval"), interval);
    p.positive(at.key("timeout"), timeout);
    if timeout > interval {
        // Blame the field the user wrote: a default timeout is only too long because of the interval.
        let field = if s.timeout.is_some() && s.interval.is_some() {
            "timeout"
        } else {
            "interval"
        };
        p.add(
            at.key(field),
            format!(
                "timeout {} is longer than interval {}",
                format_duration(timeout),
                format_duration(interval)
            ),
        );
    }
    if !s.metrics_path.starts_with('/') {
        p.add(
            at.key("metrics_path"),
            format!("{:?} is not a path (it must start with /)", s.metrics_path),
        );
    }
    if s.body_size_limit == 0 {
        p.add(
            at.key("body_size_limit"),
            "must be above 0: it bounds the memory one scrape may use (default 64MiB)",
        );
    }
    if s.series_memory_limit == 0 {
        p.add(
            at.key("series_memory_limit"),
            "must be above 0: it bounds the memory one target's series may use (default 16MiB)",
        );
    }
    if s.metric_name_validation_scheme == NameValidationScheme::Legacy
        && s.metric_name_escaping_scheme == Some(EscapingScheme::AllowUtf8)
    {
        p.add(
            at.key("metric_name_escaping_scheme"),
            "allow-utf-8 keeps UTF-8 names, which legacy validation drops: use underscores, dots or values",
        );
    }
    for (i, g) in s.static_configs.iter().enumerate() {
        target_group(p, &at.key("static_configs").index(i), g);
    }
    for (i, f) in s.file_sd_configs.iter().enumerate() {
        file_sd(p, &at.key("file_sd_configs").index(i), f);
    }
    // Kubernetes pod discovery: the checks live beside the type in agent.rs.
    for (i, k) in s.kubernetes_sd_configs.iter().enumerate() {
        let at = at.key("kubernetes_sd_configs").index(i);
        for (field, message) in k.problems() {
            p.add(at.join(&field), message);
        }
    }
    relabels(p, &at.key("relabel_configs"), &s.relabel_configs);
    relabels(
        p,
        &at.key("metric_relabel_configs"),
        &s.metric_relabel_configs,
    );
}

/// Checks one group of targets (from `static_configs` or a file_sd file).
pub(crate) fn target_group(p: &mut Problems, at: &FieldPath, g: &TargetGroupConfig) {
    for (i, t) in g.targets.iter().enumerate() {
        if let Some(m) = target_problem(t) {
            p.add(at.key("targets").index(i), m);
        }
    }
    labels(p, &at.key("labels"), &g.labels);
}

fn target_problem(t: &str) -> Option<String> {
    if t.is_empty() {
        return Some("a target cannot be empty (expected host:port)".to_owned());
    }
    if t.contains("://") || t.contains('/') {
        return Some(format!(
            "{t:?} is not host:port (set the scheme with scheme: and the path with metrics_path:)"
        ));
    }
    if t.chars().any(char::is_whitespace) {
        return Some(format!("{t:?} is not host:port (it contains whitespace)"));
    }
    None
}

fn file_sd(p: &mut Problems, at: &FieldPath, f: &FileSdConfig) {
    if f.files.is_empty() {
        p.add(at.key("files"), "at least one file pattern is required");
    }
    for (i, pattern) in f.files.iter().enumerate() {
        let at = at.key("files").index(i);
        let (dir, last) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        if dir.contains(['*', '?', '[']) {
            p.add(
                at,
                format!(
                    "{pattern:?}: wildcards are only allowed in the file name, not in directories"
                ),
            );
        } else if !(last.ends_with(".json") || last.ends_with(".yaml") || last.ends_with(".yml")) {
            p.add(
                at,
                format!("{pattern:?} does not end in .json, .yaml or .yml"),
            );
        }
    }
    p.positive(at.key("refresh_interval"), f.refresh_interval);
}

fn labels(p: &mut Problems, at: &FieldPath, labels: &BTreeMap<String, String>) {
    for (name, value) in labels {
        if !is_valid_label_name(name) {
            p.add_on_key(
                at.key(name.as_str()),
                format!("{name:?} is not a valid label name (expected [a-zA-Z_][a-zA-Z0-9_]*)"),
            );
        } else if value.is_empty() {
            p.add(at.key(name.as_str()), "a label value cannot be empty");
        }
    }
}

pub(crate) fn relabels(p: &mut Problems, at: &FieldPath, rules: &[RelabelConfig]) {
    for (i, r) in rules.iter().enumerate() {
        let at = at.index(i);
        for problem in r.problems() {
            p.add(at.join(&problem.field), problem.message);
        }
    }
}

fn remote_writes(p: &mut Problems, at: &FieldPath, rws: &[RemoteWriteConfig]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, rw) in rws.iter().enumerate() {
        let at = at.index(i);
        remote_write(p, &at, rw);
        if rw.name.is_empty() {
            continue;
        }
        if let Some(first) = names.insert(&rw.name, i) {
            p.add(
                at.key("name"),
                format!(
                    "name {:?} is already used by remote_write[{first}] (names default to the URL's host:port; set name to tell them apart)",
                    rw.name
                ),
            );
            names.insert(&rw.name, first);
        }
    }
}

fn remote_write(p: &mut Problems, at: &FieldPath, rw: &RemoteWriteConfig) {
    if let Some(t) = &rw.tls_config {
        for (field, message) in t.problems() {
            p.add(at.key("tls_config").join(&field), message);
        }
    }
    if let Some(k) = &rw.kubernetes_endpoints {
        let at = at.key("kubernetes_endpoints");
        for (field, value) in [
            ("namespace", &k.namespace),
            ("service", &k.service),
            ("port", &k.port),
        ] {
            if value.is_empty() {
                p.add(at.key(field), format!("{field} is required"));
            }
        }
    }
    if let Some(m) = url_problem(&rw.url) {
        p.add(
            if rw.url.is_empty() {
                at.clone()
            } else {
                at.key("url")
            },
            m,
        );
    }
    p.positive(at.key("remote_timeout"), rw.remote_timeout);
    for (name, value) in &rw.headers {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            p.add_on_key(
                at.key("headers").key(name.as_str()),
                format!("{name:?} is not a valid HTTP header name"),
            );
        } else if value.contains(['\r', '\n']) {
            p.add(
                at.key("headers").key(name.as_str()),
                format!("the value of header {name:?} cannot contain a line break"),
            );
        }
    }
    relabels(
        p,
        &at.key("write_relabel_configs"),
        &rw.write_relabel_configs,
    );
    let q = &rw.queue_config;
    let at = at.key("queue_config");
    p.nonzero(at.key("capacity"), q.capacity as u64);
    p.nonzero(at.key("max_shards"), q.max_shards as u64);
    p.nonzero(
        at.key("max_samples_per_send"),
        q.max_samples_per_send as u64,
    );
    if q.capacity > 0 && q.max_samples_per_send > q.capacity {
        p.add(
            at.key("max_samples_per_send"),
            format!(
                "max_samples_per_send {} is more than capacity {}",
                q.max_samples_per_send, q.capacity
            ),
        );
    }
    if let Some(d) = &q.durable {
        let at = at.key("durable");
        if d.dir.is_empty() {
            p.add(
                at.key("dir"),
                "is required (the queue's own directory)".to_owned(),
            );
        }
        if d.max_bytes < 64 << 10 {
            p.add(
                at.key("max_bytes"),
                format!("{} is below the smallest disk budget, 64KiB", d.max_bytes),
            );
        }
        if rw.kubernetes_endpoints.is_some() {
            p.add(
                at.clone(),
                "is not supported with kubernetes_endpoints (each endpoint would need its own queue)"
                    .to_owned(),
            );
        }
    }
    p.positive(at.key("batch_send_deadline"), q.batch_send_deadline);
    p.positive(at.key("min_backoff"), q.min_backoff);
    if q.min_backoff > q.max_backoff {
        p.add(
            at.key("max_backoff"),
            format!(
                "max_backoff {} is shorter than min_backoff {}",
                format_duration(q.max_backoff),
                format_duration(q.min_backoff)
            ),
        );
    }
}

pub(crate) fn url_problem(url: &str) -> Option<String> {
    if url.is_empty() {
        return Some("url is required".to_owned());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!(
            "{url:?} is not a URL (e.g. http://127.0.0.1:9091/api/v1/write)"
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Some(format!("{url:?} is not an http or https URL"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match hostport.rsplit_once(':') {
        // An IPv6 literal without a port has colons inside brackets only.
        Some((h, port)) if !port.contains(']') => (h, Some(port)),
        _ => (hostport, None),
    };
    if host.is_empty() {
        return Some(format!("{url:?} has no host"));
    }
    if url.chars().any(char::is_whitespace) {
        return Some(format!("{url:?} is not a URL (it contains whitespace)"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Some(format!("{url:?} has an invalid port {port:?}"));
    }
    None
}

fn aggregator(p: &mut Problems, at: &FieldPath, a: &AggregatorConfig) {
    p.nonzero(at.key("max_request_body_size"), a.max_request_body_size);
    let c = &a.cache;
    let cat = at.key("cache");
    p.positive(cat.key("retention"), c.retention);
    p.positive(cat.key("idle_ttl"), c.idle_ttl);
    p.positive(cat.key("stale_after"), c.stale_after);
    p.nonzero(cat.key("max_series"), c.max_series as u64);
    let q = &a.query;
    p.nonzero(at.key("query").key("max_series"), q.max_series as u64);
    p.positive(at.key("query").key("lookback_delta"), q.lookback_delta);
    p.nonzero(
        at.key("query").key("max_concurrent"),
        q.max_concurrent as u64,
    );
    p.positive(at.key("query").key("timeout"), q.timeout);
    p.nonzero(at.key("query").key("max_samples"), q.max_samples as u64);
    remote_writes(p, &at.key("remote_write"), &a.remote_write);
    for (field, message) in a.server.problems() {
        p.add(at.key("server").join(&field), message);
    }
    if let Some(alb) = &a.alb {
        let at = at.key("alb");
        for (field, message) in alb.problems() {
            p.add(at.join(&field), message);
        }
    }
    // The Kubernetes metrics APIs: the checks live beside the type in aggregator.rs.
    if let Some(k) = &a.kubernetes_api {
        let at = at.key("kubernetes_api");
        for (field, message) in k.problems() {
            p.add(at.join(&field), message);
        }
        // Both servers live in the aggregator process: the second bind would fail at start.
        if sockets_overlap(a.listen, k.listen) {
            p.add(
                at.key("listen"),
                format!(
                    "{} is also aggregator.listen ({}): the metrics APIs need a port of their own (e.g. 0.0.0.0:6443)",
                    k.listen, a.listen
                ),
            );
        }
    }
}

/// Whether binding both addresses in one process fails: the same fixed port on the same address, or on
/// any address when either is a wildcard. Port 0 always binds (the OS picks a free port).
fn sockets_overlap(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(url_problem("http://127.0.0.1:9091/api/v1/write"), None);
        assert_eq!(url_problem("https://[::1]/api/v1/push"), None);
        assert_eq!(url_problem("https://user:pw@mimir:443/api/v1/push"), None);
        assert_eq!(
            url_problem("ftp://x/y").as_deref(),
            Some(r#""ftp://x/y" is not an http or https URL"#)
        );
        assert_eq!(
            url_problem("http:///x").as_deref(),
            Some(r#""http:///x" has no host"#)
        );
        assert_eq!(
            url_problem("http://h:99999/").as_deref(),
            Some(r#""http://h:99999/" has an invalid port "99999""#)
        );
        assert!(url_problem("localhost:9091").is_some());
    }

    #[test]
    fn overlapping_listen_addresses() {
        let overlap = |a: &str, b: &str| sockets_overlap(a.parse().unwrap(), b.parse().unwrap());
        assert!(overlap("0.0.0.0:9091", "0.0.0.0:9091"));
        assert!(overlap("0.0.0.0:9091", "127.0.0.1:9091"));
        assert!(overlap("127.0.0.1:9091", "[::]:9091"));
        assert!(!overlap("127.0.0.1:9091", "127.0.0.2:9091"));
        assert!(!overlap("0.0.0.0:9091", "0.0.0.0:6443"));
        assert!(!overlap("127.0.0.1:0", "127.0.0.1:0"));
    }
}
