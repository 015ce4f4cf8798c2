//! The `agent:` section: what to scrape, how often, and where to send it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use surge_model::Tier;

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
    /// Targets listed in the config.
    pub static_configs: Vec<TargetGroupConfig>,
    /// Targets read from JSON or YAML files, re-read when they change.
    pub file_sd_configs: Vec<FileSdConfig>,
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
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
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
