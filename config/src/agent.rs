//! The `agent:` section: what to scrape, how often, and where to send it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use surge_model::{EscapingScheme, NameValidationScheme, Tier, is_valid_label_name};

use crate::cloudwatch::{EmfConfig, PutMetricDataConfig};
use crate::otlp::OtlpConfig;
use crate::path::FieldPath;
use crate::relabel::RelabelConfig;
use crate::remote_write::RemoteWriteConfig;
use crate::{duration, fields, size};

/// The agent: one per node (a DaemonSet), scraping the pods on its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Address of the agent's own `/metrics`, `/healthz` and `/readyz`. Default `0.0.0.0:9092`.
    #[serde(with = "fields::socket_addr")]
    pub listen: SocketAddr,
    /// Labels added to every series that does not already have them, e.g. `{cluster: prod}`.
    #[serde(with = "fields::label_map")]
    pub external_labels: BTreeMap<String, String>,
    /// On SIGTERM, how long queues may keep sending what they hold before the agent exits. Default `5s`.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// Default interval and timeout of each tier.
    pub tiers: TiersConfig,
    /// The scrape jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Where scraped series go (the aggregator, and any other remote-write receiver).
    pub remote_write: Vec<RemoteWriteConfig>,
    /// CloudWatch embedded-metric-format outputs (stdout or CloudWatch Logs).
    pub emf: Vec<EmfConfig>,
    /// CloudWatch `PutMetricData` outputs.
    pub cloudwatch: Vec<PutMetricDataConfig>,
    /// OpenTelemetry (OTLP) metrics destinations, beside `remote_write`: every scraped batch goes to
    /// each of them too.
    pub otlp: Vec<OtlpConfig>,
    /// The most series the agent holds for all targets together (each target's scrape cache, relabeled-
    /// away series included: they cost memory too). A scrape whose new series would go past it is
    /// refused whole, with `up` = 0 and the reason `series_total_limit`, and the targets already held
    /// keep theirs; `surge_agent_series` shows the count. Default 250000 (about 75 MiB of series
    /// state, inside a 256 MiB DaemonSet memory limit with the queues); 0: no cap.
    pub total_series_limit: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            external_labels: BTreeMap::new(),
            shutdown_timeout: Duration::from_secs(5),
            tiers: TiersConfig::default(),
            scrape_configs: Vec::new(),
            remote_write: Vec::new(),
            emf: Vec::new(),
            cloudwatch: Vec::new(),
            otlp: Vec::new(),
            total_series_limit: 250_000,
        }
    }
}

/// Per-tier defaults for scrape jobs that do not set their own interval and timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawTiersConfig")]
pub struct TiersConfig {
    /// Default `{interval: 1s, timeout: 800ms}`.
    pub critical: TierConfig,
    /// Default `{interval: 15s, timeout: 10s}`.
    pub standard: TierConfig,
}

/// A tier's default scrape interval and timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TierConfig {
    /// How often a job of this tier is scraped.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How long one scrape may take; at most `interval`. When only `interval` is set, the tier's
    /// default timeout capped at `interval`.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl TierConfig {
    /// The built-in defaults of `tier`.
    pub fn default_for(tier: Tier) -> Self {
        match tier {
            Tier::Critical => TierConfig {
                interval: Duration::from_secs(1),
                timeout: Duration::from_millis(800),
            },
            Tier::Standard => TierConfig {
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(10),
            },
        }
    }
}

impl TiersConfig {
    /// The settings of `tier`.
    pub fn get(&self, tier: Tier) -> TierConfig {
        match tier {
            Tier::Critical => self.critical,
            Tier::Standard => self.standard,
        }
    }
}

impl Default for TiersConfig {
    fn default() -> Self {
        TiersConfig {
            critical: TierConfig::default_for(Tier::Critical),
            standard: TierConfig::default_for(Tier::Standard),
        }
    }
}

/// What the user wrote under `tiers:`; missing values take the tier's own defaults.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTiersConfig {
    critical: RawTierConfig,
    standard: RawTierConfig,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTierConfig {
    #[serde(with = "duration::option")]
    interval: Option<Duration>,
    #[serde(with = "duration::option")]
    timeout: Option<Duration>,
}

impl RawTierConfig {
    fn resolve(self, tier: Tier) -> TierConfig {
        let d = TierConfig::default_for(tier);
        let interval = self.interval.unwrap_or(d.interval);
        TierConfig {
            interval,
            timeout: self.timeout.unwrap_or(d.timeout.min(interval)),
        }
    }
}

impl From<RawTiersConfig> for TiersConfig {
    fn from(raw: RawTiersConfig) -> Self {
        TiersConfig {
            critical: raw.critical.resolve(Tier::Critical),
            standard: raw.standard.resolve(Tier::Standard),
        }
    }
}

/// One scrape job: a set of targets scraped alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The job's name, unique among jobs; also the `job` label of its targets. Required.
    pub job_name: String,
    /// `critical` (scraped every second by default and shipped at once) or `standard` (the default).
    #[serde(with = "fields::tier")]
    pub tier: Tier,
    /// How often each target is scraped (alias `scrape_interval`). Default: the tier's interval.
    /// After loading this is always set; read it with [`ScrapeConfig::interval`].
    #[serde(
        alias = "scrape_interval",
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    /// How long one scrape may take, at most `interval` (alias `scrape_timeout`). Default: the tier's
    /// timeout, capped at `interval`. After loading this is always set; read it with
    /// [`ScrapeConfig::timeout`].
    #[serde(
        alias = "scrape_timeout",
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// `http` (default) or `https`.
    pub scheme: Scheme,
    /// The path scraped on each target. Default `/metrics`.
    pub metrics_path: String,
    /// URL query parameters sent with each scrape, e.g. `{module: [http_2xx]}`.
    pub params: BTreeMap<String, Vec<String>>,
    /// When a scraped series has a label the target also sets, keep the scraped value (true) or rename
    /// it `exported_<name>` and keep the target's (false, the default).
    pub honor_labels: bool,
    /// Use timestamps the target exposes (true, the default) or the scrape time.
    pub honor_timestamps: bool,
    /// Most series one scrape may return; a scrape over it fails. 0 (default) is unlimited.
    pub sample_limit: u64,
    /// Most labels one series may have; a scrape over it fails. 0 (default) is unlimited.
    pub label_limit: u64,
    /// Longest label name allowed, in bytes; a scrape over it fails. 0 (default) is unlimited.
    pub label_name_length_limit: u64,
    /// Longest label value allowed, in bytes; a scrape over it fails. 0 (default) is unlimited.
    pub label_value_length_limit: u64,
    /// Largest response body read from a target (uncompressed), e.g. `64MiB` (the default) or an integer
    /// in bytes. Cannot be 0: it bounds the agent's memory.
    #[serde(with = "size")]
    pub body_size_limit: u64,
    /// Most memory one target's series may hold in the agent, estimated while the body is parsed (per
    /// series: its encoded labels plus about 200 bytes of cache, batch and queue entries), e.g. `16MiB`
    /// (the default, about 50 000 series of typical labels) or an integer in bytes. A scrape over it is
    /// refused whole, with `up` = 0 and the reason, before the rest of its series are built. Cannot be
    /// 0: with `body_size_limit` it bounds what one target can cost the agent whatever it exposes.
    #[serde(with = "size")]
    pub series_memory_limit: u64,
    /// Which metric and label names a scraped series may have, as Prometheus 3's
    /// `metric_name_validation_scheme`: `utf8` (the default; any non-empty UTF-8 name, e.g.
    /// `{"my.metric", "k.8s"="v"}`) or `legacy` (`[a-zA-Z_:][a-zA-Z0-9_:]*` names and
    /// `[a-zA-Z_][a-zA-Z0-9_]*` label names). A series whose names fail it (after escaping and metric
    /// relabeling) is dropped and counted as invalid.
    #[serde(with = "fields::name_validation")]
    pub metric_name_validation_scheme: NameValidationScheme,
    /// How names that are not legacy names are escaped, as Prometheus 3's
    /// `metric_name_escaping_scheme`: asked of the target in the `Accept` header (`escaping=`) and
    /// applied by the agent to what arrives (a target may ignore the request). `allow-utf-8` (keep
    /// them), `underscores` (each other character becomes `_`), `dots` (`.` becomes `_dot_`, `_`
    /// becomes `__`) or `values` (`U__` and code points, reversible). Default: `allow-utf-8` under
    /// `utf8` validation, `underscores` under `legacy`; `allow-utf-8` with `legacy` is an error.
    /// Read the effective value with [`ScrapeConfig::name_escaping`].
    #[serde(with = "fields::escaping", skip_serializing_if = "Option::is_none")]
    pub metric_name_escaping_scheme: Option<EscapingScheme>,
    /// Targets listed in the config.
    pub static_configs: Vec<TargetGroupConfig>,
    /// Targets read from JSON or YAML files, re-read when they change.
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Targets discovered through the Kubernetes API: the annotated pods of the agent's own node,
    /// followed by watch (a created pod is scraped within about a second). See [`KubernetesSdConfig`].
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    /// Rules applied to each target's labels before it is scraped; they can drop targets.
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped series; they can drop series.
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            tier: Tier::Standard,
            interval: None,
            timeout: None,
            scheme: Scheme::Http,
            metrics_path: "/metrics".to_owned(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            body_size_limit: 64 << 20,
            series_memory_limit: 16 << 20,
            metric_name_validation_scheme: NameValidationScheme::Utf8,
            metric_name_escaping_scheme: None,
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            kubernetes_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
        }
    }
}

impl ScrapeConfig {
    /// The scrape interval: as set, else the tier's built-in default. Loaded configs have it resolved
    /// against their `tiers:` section.
    pub fn interval(&self) -> Duration {
        self.interval
            .unwrap_or_else(|| TierConfig::default_for(self.tier).interval)
    }

    /// The scrape timeout: as set, else the tier's built-in default capped at [`Self::interval`].
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or_else(|| {
            TierConfig::default_for(self.tier)
                .timeout
                .min(self.interval())
        })
    }

    /// The escaping asked of targets and applied to scraped names: as set, else `allow-utf-8` under
    /// `utf8` validation and `underscores` under `legacy` (Prometheus 3's defaults).
    pub fn name_escaping(&self) -> EscapingScheme {
        self.metric_name_escaping_scheme
            .unwrap_or(match self.metric_name_validation_scheme {
                NameValidationScheme::Utf8 => EscapingScheme::AllowUtf8,
                NameValidationScheme::Legacy => EscapingScheme::Underscores,
            })
    }

    /// Fills in `interval` and `timeout` from `tiers` where the job does not set them.
    pub fn resolve(&mut self, tiers: &TiersConfig) {
        let t = tiers.get(self.tier);
        let interval = *self.interval.get_or_insert(t.interval);
        self.timeout.get_or_insert(t.timeout.min(interval));
    }
}

/// The protocol used to scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A group of targets sharing labels: an entry of `static_configs`, or of a file_sd file
/// (`[{"targets": ["10.0.0.1:9100"], "labels": {"env": "dev"}}]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetGroupConfig {
    /// `host:port` of each target, without scheme or path.
    pub targets: Vec<String>,
    /// Labels set on every target of the group.
    #[serde(with = "fields::label_map")]
    pub labels: BTreeMap<String, String>,
}

/// Targets read from files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files to read, ending in `.json`, `.yaml` or `.yml`; the last path component may hold `*` and
    /// `?` wildcards, e.g. `/etc/surge/targets/*.json`.
    pub files: Vec<String>,
    /// How often the files are re-read even if no change was noticed. Default `5m`.
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
}

impl Default for FileSdConfig {
    fn default() -> Self {
        FileSdConfig {
            files: Vec::new(),
            refresh_interval: Duration::from_secs(300),
        }
    }
}

/// Pods discovered through the Kubernetes API, as the agent's DaemonSet sees them: only the pods bound to
/// `node_name`, watched (not polled), so pod churn reaches the scrape loops within about a second.
///
/// A pod is a target when it is annotated `prometheus.io/scrape: "true"`, is `Running`, is not being
/// deleted, has a pod IP, and names its port: the annotation `prometheus.io/port`, else its first
/// container port named `metrics` or `http-metrics`. Its address is `<pod IP>:<port>`. Other annotations:
/// `prometheus.io/path` sets `__metrics_path__` (else the job's `metrics_path`), `prometheus.io/scheme`
/// sets `__scheme__` (`http` or `https`), and `surge.dev/tier` (`critical` or `standard`, the default)
/// sets `__meta_surge_tier`.
///
/// Target labels: `namespace`, `pod`, `node`, `container` (when a named container port is used), and
/// the pod labels listed in `attach_labels`. Meta labels for `relabel_configs`, as Prometheus names them:
/// `__meta_kubernetes_namespace`, `__meta_kubernetes_pod_name`, `__meta_kubernetes_pod_ip`,
/// `__meta_kubernetes_pod_node_name`, `__meta_kubernetes_pod_ready`, `__meta_kubernetes_pod_phase`,
/// `__meta_kubernetes_pod_uid`, `__meta_kubernetes_pod_host_ip`,
/// `__meta_kubernetes_pod_controller_kind`/`_name`, `__meta_kubernetes_pod_label_<name>` and
/// `__meta_kubernetes_pod_annotation_<name>` (with `..._labelpresent_<name>` and
/// `..._annotationpresent_<name>` set to `true`), and `__meta_surge_tier`. Names are sanitized: every
/// character outside `[a-zA-Z0-9_]` becomes `_`.
///
/// The tier is a property of the job, so a config that scrapes both tiers has two jobs with the same
/// discovery, each keeping its tier: `relabel_configs: [{source_labels: [__meta_surge_tier], regex:
/// critical, action: keep}]` (see `examples/kubernetes-agent.yaml`). Jobs with equal
/// `kubernetes_sd_configs` entries share one watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesSdConfig {
    /// What is discovered. Only `pod` (the default): the pods of `node_name`.
    pub role: KubernetesRole,
    /// The node whose pods are discovered (field selector `spec.nodeName`); in the DaemonSet,
    /// `${NODE_NAME}` set from the downward API (`fieldRef: spec.nodeName`). Required.
    pub node_name: String,
    /// Namespaces to watch; empty (the default) watches all of them.
    pub namespaces: Vec<String>,
    /// Pod labels copied onto the targets, e.g. `[app, app.kubernetes.io/name]`; the target label's name
    /// is the pod label's with every character outside `[a-zA-Z0-9_]` replaced by `_`
    /// (`app_kubernetes_io_name`). A pod without the label gets no such target label.
    pub attach_labels: Vec<String>,
    /// A kubeconfig file to reach the API server with. Default: the in-cluster service account, else
    /// the file named by `$KUBECONFIG`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
}

impl Default for KubernetesSdConfig {
    fn default() -> Self {
        KubernetesSdConfig {
            role: KubernetesRole::Pod,
            node_name: String::new(),
            namespaces: Vec::new(),
            attach_labels: Vec::new(),
            kubeconfig: None,
        }
    }
}

/// The kind of object `kubernetes_sd_configs` turns into targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesRole {
    /// The pods of one node.
    #[default]
    Pod,
}

/// Target labels set by Kubernetes pod discovery itself; `attach_labels` may not map onto them.
pub const KUBERNETES_SD_TARGET_LABELS: [&str; 6] =
    ["namespace", "pod", "node", "container", "job", "instance"];

impl KubernetesSdConfig {
    /// Each `attach_labels` entry with the target label it becomes, in order.
    pub fn attached_labels(&self) -> Vec<(String, String)> {
        self.attach_labels
            .iter()
            .map(|l| (l.clone(), sanitize_label_name(l)))
            .collect()
    }

    /// Problems with this entry, each with its field relative to the entry.
    pub(crate) fn problems(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        let f = |name: &str| FieldPath::root().key(name);
        if self.node_name.is_empty() {
            out.push((
                FieldPath::root(),
                "node_name is required (in the DaemonSet, ${NODE_NAME} from fieldRef spec.nodeName)"
                    .to_owned(),
            ));
        } else if !is_dns_subdomain(&self.node_name) {
            out.push((
                f("node_name"),
                format!("{:?} is not a node name", self.node_name),
            ));
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            if !is_dns_label(ns) {
                out.push((
                    f("namespaces").index(i),
                    format!("{ns:?} is not a namespace name (lowercase letters, digits and -)"),
                ));
            }
        }
        let mut seen: Vec<String> = Vec::new();
        for (i, (pod_label, target)) in self.attached_labels().into_iter().enumerate() {
            let at = f("attach_labels").index(i);
            if pod_label.is_empty() {
                out.push((at, "a label name cannot be empty".to_owned()));
            } else if target.starts_with("__") || !is_valid_label_name(&target) {
                out.push((
                    at,
                    format!("{pod_label:?} would become target label {target:?}, which is not a usable label name"),
                ));
            } else if KUBERNETES_SD_TARGET_LABELS.contains(&target.as_str()) {
                out.push((
                    at,
                    format!("{pod_label:?} would become target label {target:?}, which discovery sets itself"),
                ));
            } else if seen.contains(&target) {
                out.push((
                    at,
                    format!("{pod_label:?} would become target label {target:?}, as an earlier entry does"),
                ));
            }
            seen.push(target);
        }
        if self.kubeconfig.as_deref() == Some("") {
            out.push((
                f("kubeconfig"),
                "an empty path (omit kubeconfig to use the in-cluster service account)".to_owned(),
            ));
        }
        out
    }
}

/// Replaces every character outside `[a-zA-Z0-9_]` with `_`, as Prometheus does for Kubernetes label and
/// annotation names.
fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A DNS-1123 subdomain: what node names are.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A DNS-1123 label: what namespace names are.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use crate::{Config, MapEnv, load_str};

    use super::*;

    fn load(text: &str) -> Result<Config, crate::ConfigErrors> {
        load_str(text, "surge.yaml", &MapEnv::new().with("NODE_NAME", "n1"))
    }

    #[test]
    fn kubernetes_sd_loads_with_defaults_and_substitution() {
        let c = load(
            r#"
agent:
  scrape_configs:
    - job_name: pods
      kubernetes_sd_configs:
        - node_name: ${NODE_NAME}
        - role: pod
          node_name: ip-10-0-0-1.ec2.internal
          namespaces: [default, shop]
          attach_labels: [app, app.kubernetes.io/name]
          kubeconfig: /etc/surge/kubeconfig
"#,
        )
        .unwrap();
        let k = &c.agent.scrape_configs[0].kubernetes_sd_configs;
        assert_eq!(
            k[0],
            KubernetesSdConfig {
                node_name: "n1".into(),
                ..KubernetesSdConfig::default()
            }
        );
        assert_eq!(k[1].role, KubernetesRole::Pod);
        assert_eq!(k[1].namespaces, ["default", "shop"]);
        assert_eq!(k[1].kubeconfig.as_deref(), Some("/etc/surge/kubeconfig"));
        assert_eq!(
            k[1].attached_labels(),
            [
                ("app".to_owned(), "app".to_owned()),
                (
                    "app.kubernetes.io/name".to_owned(),
                    "app_kubernetes_io_name".to_owned()
                )
            ]
        );
    }

    #[test]
    fn kubernetes_sd_problems_are_all_reported() {
        let e = load(
            r#"
agent:
  scrape_configs:
    - job_name: pods
      kubernetes_sd_configs:
        - namespaces: [default]
        - node_name: N1
          namespaces: ["Shop", ""]
          attach_labels: [app, "app", pod, "1x", "a.b", "a/b", ""]
          kubeconfig: ""
"#,
        )
        .unwrap_err()
        .to_lines();
        let s = "surge.yaml";
        assert_eq!(
            e,
            [
                format!(
                    "{s}:6:11: agent.scrape_configs[0].kubernetes_sd_configs[0]: node_name is required (in the DaemonSet, ${{NODE_NAME}} from fieldRef spec.nodeName)"
                ),
                format!(
                    r#"{s}:7:22: agent.scrape_configs[0].kubernetes_sd_configs[1].node_name: "N1" is not a node name"#
                ),
                format!(
                    r#"{s}:8:24: agent.scrape_configs[0].kubernetes_sd_configs[1].namespaces[0]: "Shop" is not a namespace name (lowercase letters, digits and -)"#
                ),
                format!(
                    r#"{s}:8:32: agent.scrape_configs[0].kubernetes_sd_configs[1].namespaces[1]: "" is not a namespace name (lowercase letters, digits and -)"#
                ),
                format!(
                    r#"{s}:9:32: agent.scrape_configs[0].kubernetes_sd_configs[1].attach_labels[1]: "app" would become target label "app", as an earlier entry does"#
                ),
                format!(
                    r#"{s}:9:39: agent.scrape_configs[0].kubernetes_sd_configs[1].attach_labels[2]: "pod" would become target label "pod", which discovery sets itself"#
                ),
                format!(
                    r#"{s}:9:44: agent.scrape_configs[0].kubernetes_sd_configs[1].attach_labels[3]: "1x" would become target label "1x", which is not a usable label name"#
                ),
                format!(
                    r#"{s}:9:57: agent.scrape_configs[0].kubernetes_sd_configs[1].attach_labels[5]: "a/b" would become target label "a_b", as an earlier entry does"#
                ),
                format!(
                    r#"{s}:9:64: agent.scrape_configs[0].kubernetes_sd_configs[1].attach_labels[6]: a label name cannot be empty"#
                ),
                format!(
                    r#"{s}:10:23: agent.scrape_configs[0].kubernetes_sd_configs[1].kubeconfig: an empty path (omit kubeconfig to use the in-cluster service account)"#
                ),
            ]
        );
    }

    #[test]
    fn unknown_role_and_fields_are_errors() {
        let e = load(
            r#"
agent:
  scrape_configs:
    - job_name: pods
      kubernetes_sd_configs: [{role: node, node_name: n1}]
    - job_name: b
      kubernetes_sd_configs: [{node_name: n1, selectors: []}]
"#,
        )
        .unwrap_err()
        .to_lines();
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].contains("kubernetes_sd_configs[0].role"), "{}", e[0]);
        assert!(e[1].contains("unknown field \"selectors\""), "{}", e[1]);
    }
}
