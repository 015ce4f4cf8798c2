//! `agent.emf:` and `agent.cloudwatch:` — CloudWatch outputs beside remote-write: embedded metric
//! format documents (on stdout, or straight to CloudWatch Logs) and `PutMetricData`.
//!
//! Both read the same series the remote-write destinations get. Critical-tier series are written at
//! high resolution (`StorageResolution: 1`), standard ones at 60 s. Credentials come from the standard
//! AWS chain (environment, IRSA web identity, EKS Pod Identity, instance profile).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use surge_model::is_valid_label_name;

use crate::duration;
use crate::path::FieldPath;

/// Where EMF documents go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmfDestination {
    /// One JSON document per line on the agent's stdout, for the CloudWatch agent or Fluent Bit.
    #[default]
    Stdout,
    /// `PutLogEvents` to `log_group`/`log_stream`, created when missing.
    CloudwatchLogs,
}

/// An embedded-metric-format output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmfConfig {
    /// Names the output in logs and in the `destination` label of the sender's metrics; unique
    /// among `emf` and `cloudwatch` outputs. Default `emf`.
    pub name: String,
    /// The CloudWatch namespace of every metric, e.g. `surge`. Required; not `AWS/…`.
    pub namespace: String,
    /// Label names written as dimensions, in this order (at most 30), e.g. `[namespace, pod]`. A
    /// series without one of them has fewer dimensions.
    pub dimensions: Vec<String>,
    /// Series whose metric name matches this regular expression are counters (sent as deltas), beside
    /// the names ending in `_total`, `_count`, `_sum` or `_bucket`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_pattern: Option<String>,
    /// Where the documents go: `stdout` (default) or `cloudwatch_logs`.
    pub destination: EmfDestination,
    /// The log group of `cloudwatch_logs`, e.g. `/surge/metrics`. Required there.
    pub log_group: String,
    /// The log stream of `cloudwatch_logs`, e.g. `${NODE_NAME}`. Required there.
    pub log_stream: String,
    /// The longest document; longer ones are split. Default 262144 (256 KiB), at most 1048550.
    pub max_event_bytes: usize,
    /// AWS region and endpoint overrides (`cloudwatch_logs` only), e.g. `{region: eu-west-1}`.
    pub aws: AwsConfig,
    /// Buffering, batching and retries.
    pub queue_config: CloudWatchQueueConfig,
}

impl Default for EmfConfig {
    fn default() -> Self {
        EmfConfig {
            name: "emf".to_owned(),
            namespace: String::new(),
            dimensions: Vec::new(),
            counter_pattern: None,
            destination: EmfDestination::Stdout,
            log_group: String::new(),
            log_stream: String::new(),
            max_event_bytes: 256 * 1024,
            aws: AwsConfig::default(),
            queue_config: CloudWatchQueueConfig::default(),
        }
    }
}

/// A `PutMetricData` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PutMetricDataConfig {
    /// Names the output in logs and metrics; unique among `emf` and `cloudwatch` outputs. Default
    /// `cloudwatch`.
    pub name: String,
    /// The CloudWatch namespace of every metric. Required; not `AWS/…`.
    pub namespace: String,
    /// Label names written as dimensions, in this order (at most 30).
    pub dimensions: Vec<String>,
    /// Series whose metric name matches are counters too (see `emf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_pattern: Option<String>,
    /// AWS region and endpoint overrides, e.g. `{region: eu-west-1}`.
    pub aws: AwsConfig,
    /// Buffering, batching, retries and the request budget. `PutMetricData` is billed per request and
    /// limited per account and region (500/s by default): `max_requests_per_second` keeps this agent's
    /// share.
    pub queue_config: CloudWatchQueueConfig,
}

impl Default for PutMetricDataConfig {
    fn default() -> Self {
        PutMetricDataConfig {
            name: "cloudwatch".to_owned(),
            namespace: String::new(),
            dimensions: Vec::new(),
            counter_pattern: None,
            aws: AwsConfig::default(),
            queue_config: CloudWatchQueueConfig {
                max_requests_per_second: Some(20.0),
                ..CloudWatchQueueConfig::default()
            },
        }
    }
}

/// Overrides of the standard AWS chain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// The region, e.g. `eu-west-1`. Default: `AWS_REGION`, the config file, or instance metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The service endpoint, e.g. `http://127.0.0.1:4566` for LocalStack. Default: the region's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

/// How samples wait for, and are retried towards, one CloudWatch output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudWatchQueueConfig {
    /// Samples buffered; beyond it new batches are dropped and counted. Default 100000.
    pub capacity: usize,
    /// Standard-tier samples sent together once this many wait. Default 10000.
    pub max_samples_per_send: usize,
    /// Longest time a standard-tier sample waits for its batch (critical ones leave at once).
    /// Default `5s`.
    #[serde(with = "duration")]
    pub batch_send_deadline: Duration,
    /// First retry delay, doubled per retry. Default `100ms`.
    #[serde(with = "duration")]
    pub min_backoff: Duration,
    /// Longest retry delay. Default `10s`.
    #[serde(with = "duration")]
    pub max_backoff: Duration,
    /// Time allowed for one request. Default `10s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Requests per second at most (retries included). Default: none for `emf`, 20 for `cloudwatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_second: Option<f64>,
}

impl Default for CloudWatchQueueConfig {
    fn default() -> Self {
        CloudWatchQueueConfig {
            capacity: 100_000,
            max_samples_per_send: 10_000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            max_requests_per_second: None,
        }
    }
}

/// The largest EMF event: PutLogEvents' 1,048,576 bytes less its 26 bytes of per-event overhead.
pub const MAX_EMF_EVENT_BYTES: usize = 1_048_550;

/// Problems with the fields both outputs share, relative to the entry.
fn common(
    out: &mut Vec<(FieldPath, String)>,
    name: &str,
    namespace: &str,
    dimensions: &[String],
    counter_pattern: Option<&str>,
    aws: &AwsConfig,
    queue: &CloudWatchQueueConfig,
) {
    let f = |n: &str| FieldPath::root().key(n);
    let a = |n: &str| FieldPath::root().key("aws").key(n);
    if name.is_empty() {
        out.push((f("name"), "must not be empty".to_owned()));
    }
    if namespace.is_empty() {
        out.push((FieldPath::root(), "namespace is required".to_owned()));
    } else if namespace.len() > 255 || namespace.starts_with("AWS/") || namespace.starts_with(':') {
        out.push((
            f("namespace"),
            format!(
                "{namespace:?} is not a custom namespace (at most 255 characters, not AWS/…, not starting with :)"
            ),
        ));
    } else if !namespace.is_ascii() || namespace.chars().any(|c| c.is_ascii_control()) {
        out.push((
            f("namespace"),
            format!("{namespace:?} must be printable ASCII"),
        ));
    }
    if dimensions.len() > 30 {
        out.push((
            f("dimensions"),
            format!(
                "{} dimensions, CloudWatch allows at most 30",
                dimensions.len()
            ),
        ));
    }
    for (i, d) in dimensions.iter().enumerate() {
        if !is_valid_label_name(d) || d.starts_with("__") {
            out.push((
                f("dimensions").index(i),
                format!("{d:?} is not a label name"),
            ));
        } else if dimensions[..i].contains(d) {
            out.push((f("dimensions").index(i), format!("{d:?} is listed twice")));
        }
    }
    if let Some(p) = counter_pattern
        && let Err(e) = regex::Regex::new(p)
    {
        out.push((
            f("counter_pattern"),
            format!("{p:?} is not a regular expression: {e}"),
        ));
    }
    if let Some(r) = &aws.region
        && (r.is_empty()
            || !r
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        out.push((
            a("region"),
            format!("{r:?} is not a region name (e.g. eu-west-1)"),
        ));
    }
    if let Some(u) = &aws.endpoint_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        out.push((
            a("endpoint_url"),
            format!("{u:?} is not an http:// or https:// URL"),
        ));
    }
    let q = |n: &str| FieldPath::root().key("queue_config").key(n);
    for (field, zero) in [
        ("capacity", queue.capacity == 0),
        ("max_samples_per_send", queue.max_samples_per_send == 0),
        ("batch_send_deadline", queue.batch_send_deadline.is_zero()),
        ("min_backoff", queue.min_backoff.is_zero()),
        ("max_backoff", queue.max_backoff.is_zero()),
        ("timeout", queue.timeout.is_zero()),
    ] {
        if zero {
            out.push((q(field), "must be above 0".to_owned()));
        }
    }
    if queue.min_backoff > queue.max_backoff {
        out.push((
            q("min_backoff"),
            format!(
                "{} is above max_backoff {}",
                crate::format_duration(queue.min_backoff),
                crate::format_duration(queue.max_backoff)
            ),
        ));
    }
    if let Some(r) = queue.max_requests_per_second
        && !(r.is_finite() && r > 0.0)
    {
        out.push((
            q("max_requests_per_second"),
            format!("{r} must be a positive number"),
        ));
    }
}

impl EmfConfig {
    /// Problems with this entry, each with its field relative to the entry.
    pub(crate) fn problems(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        common(
            &mut out,
            &self.name,
            &self.namespace,
            &self.dimensions,
            self.counter_pattern.as_deref(),
            &self.aws,
            &self.queue_config,
        );
        let f = |n: &str| FieldPath::root().key(n);
        if !(1024..=MAX_EMF_EVENT_BYTES).contains(&self.max_event_bytes) {
            out.push((
                f("max_event_bytes"),
                format!(
                    "{} is outside 1024..={MAX_EMF_EVENT_BYTES}",
                    self.max_event_bytes
                ),
            ));
        }
        match self.destination {
            EmfDestination::CloudwatchLogs => {
                if self.log_group.is_empty() {
                    out.push((
                        FieldPath::root(),
                        "log_group is required with destination: cloudwatch_logs".to_owned(),
                    ));
                }
                if self.log_stream.is_empty() {
                    out.push((
                        FieldPath::root(),
                        "log_stream is required with destination: cloudwatch_logs".to_owned(),
                    ));
                } else if self.log_stream.contains([':', '*']) {
                    out.push((
                        f("log_stream"),
                        format!("{:?} contains : or *", self.log_stream),
                    ));
                }
            }
            EmfDestination::Stdout => {
                if self.aws != AwsConfig::default() {
                    out.push((
                        FieldPath::root(),
                        "aws: applies to destination: cloudwatch_logs only".to_owned(),
                    ));
                }
            }
        }
        out
    }
}

impl PutMetricDataConfig {
    /// Problems with this entry, each with its field relative to the entry.
    pub(crate) fn problems(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        common(
            &mut out,
            &self.name,
            &self.namespace,
            &self.dimensions,
            self.counter_pattern.as_deref(),
            &self.aws,
            &self.queue_config,
        );
        out
    }
}
