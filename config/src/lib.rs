//! surge's configuration: the one YAML file both processes read, and file_sd target files.
//!
//! This is the only crate that reads config files and the environment. Loading is pure given its
//! inputs: the text, a name for it, and an [`Env`] to resolve `${VAR}` references.
//!
//! ```text
//! text ──${VAR}──▶ substituted text ──yaml-rust2 events──▶ field path → position index
//!                                    └─serde_yaml_ng──▶ Value ──serde──▶ Config ──defaults──▶ validate
//! ```
//!
//! Errors name file, line, column and field, and read as phrases carrying the offending input:
//!
//! ```text
//! surge.yaml:14:17: agent.scrape_configs[0].interval: "1x" is not a duration (e.g. 1s, 500ms)
//! surge.yaml:3:5: agent.scrape_configs[0]: unknown field "intervall", expected one of ... (did you mean "interval"?)
//! ```
//!
//! Reading stops at the first problem within one scrape config or remote-write destination, but reads
//! every other item; validation (unique names, timeout ≤ interval, relabel rules, URLs...) reports every
//! problem of a config that reads cleanly. Errors come in document order.
//!
//! Environment substitution: `${NAME}` and `${NAME:-default}` (the default also applies when the
//! variable is empty) are replaced in the raw text before parsing; `$$` is a literal `$`. `${1}` and `$1`
//! (regex groups in relabel replacements) are left alone; a named group `${name}` must be written
//! `$${name}`. Lines that are only a comment are not substituted. A value that contains YAML syntax
//! (`: `, `#`, a newline) should be substituted inside quotes.

#![allow(
    clippy::result_large_err,
    reason = "a ConfigError is built only on the cold path of loading a file; plain public fields beat boxing"
)]

mod agent;
mod aggregator;
mod alb;
mod cloudwatch;
pub mod duration;
mod env;
mod error;
mod fields;
mod file_sd;
mod load;
mod nodes;
mod otlp;
mod path;
mod peers;
mod policy;
mod relabel;
mod remote_write;
mod server;
pub mod size;
mod source;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use agent::{
    AgentConfig, FileSdConfig, KUBERNETES_SD_TARGET_LABELS, KubernetesRole, KubernetesSdConfig,
    Scheme, ScrapeConfig, TargetGroupConfig, TierConfig, TiersConfig,
};
pub use aggregator::{
    AggregatorConfig, CacheConfig, CustomMetricConfig, ExternalMetricConfig, ForwardTlsConfig,
    KubernetesApiConfig, KubernetesApiTlsConfig, QueryConfig, RequestHeaderConfig,
};
pub use alb::{AlbConfig, AlbTargetGroupConfig, AlbTargetSideConfig};
pub use cloudwatch::{
    AwsConfig, CloudWatchQueueConfig, EmfConfig, EmfDestination, MAX_EMF_EVENT_BYTES,
    PutMetricDataConfig,
};
pub use duration::{DurationError, format_duration, parse_duration};
pub use env::{Env, MapEnv, ProcessEnv};
pub use error::{ConfigError, ConfigErrorKind, ConfigErrors, Position};
pub use file_sd::{expand_file_sd_globs, load_file_sd, parse_file_sd};
pub use nodes::{HeadroomConfig, NodesConfig};
pub use otlp::{
    OtlpCompression, OtlpConfig, OtlpProtocol, OtlpQueueConfig, OtlpTlsConfig,
    default_resource_attributes,
};
pub use path::{FieldPath, PathSegment};
pub use peers::PeersConfig;
pub use policy::{ActuationMode, PolicyConfig, ScheduleConfig};
pub use relabel::{
    DEFAULT_REGEX, DEFAULT_REPLACEMENT, DEFAULT_SEPARATOR, RelabelAction, RelabelConfig,
    RelabelProblem, RelabelRegex,
};
pub use remote_write::{
    DurableQueueConfig, FsyncMode, KubernetesEndpointsConfig, QueueConfig, RemoteWriteConfig,
    WhenFullMode,
};
pub use server::{
    ClientTlsConfig, ServerConfig, ServerTlsConfig, TokenReviewConfig, WriteAuthConfig,
};
pub use size::{SizeError, format_size, parse_size};

/// A whole surge config file. Both sections are optional; a missing one takes its defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The agent (`surge agent`, and the agent half of `surge run`).
    pub agent: AgentConfig,
    /// The aggregator (`surge aggregator`, and the aggregator half of `surge run`).
    pub aggregator: AggregatorConfig,
    /// Autoscaling policies the aggregator's engine evaluates on every ingest.
    pub policies: Vec<PolicyConfig>,
    /// Positions of this config's fields in its file, for errors found after loading.
    #[serde(skip)]
    pub locator: Locator,
}

/// Turns a field path of a loaded config into a located error (`file:line:column: path: message`).
#[derive(Clone, Default)]
pub struct Locator(Option<std::sync::Arc<dyn Fn(FieldPath, String) -> ConfigError + Send + Sync>>);

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Locator")
    }
}

impl PartialEq for Locator {
    /// Positions are not part of a config's value.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Locator {
    pub(crate) fn new(
        f: impl Fn(FieldPath, String) -> ConfigError + Send + Sync + 'static,
    ) -> Self {
        Locator(Some(std::sync::Arc::new(f)))
    }
}

impl Config {
    /// An error about the field at `path`, located in the file this config was loaded from (for checks
    /// other crates make after loading, e.g. a policy's query that does not parse).
    pub fn error_at(&self, path: FieldPath, message: impl Into<String>) -> ConfigError {
        let message = message.into();
        match &self.locator.0 {
            Some(f) => f(path, message),
            None => ConfigError::new("<config>", path, ConfigErrorKind::Invalid { message }),
        }
    }

    /// Fills in what defaults to other values: each scrape job's interval and timeout from its tier,
    /// each remote-write destination's name from its URL. Loading does this; call it on a config built
    /// in code.
    pub fn resolve_defaults(&mut self) {
        let tiers = self.agent.tiers;
        for s in &mut self.agent.scrape_configs {
            s.resolve(&tiers);
        }
        for rw in self
            .agent
            .remote_write
            .iter_mut()
            .chain(self.aggregator.remote_write.iter_mut())
        {
            if rw.name.is_empty() {
                rw.name = rw.url_authority().to_owned();
            }
        }
        for (i, o) in self.agent.otlp.iter_mut().enumerate() {
            if o.name.is_empty() {
                o.name = otlp::OtlpConfig::default_name(i);
            }
        }
    }
}

/// Loads and validates the config file at `path`, substituting variables from the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = load::read_text(path)?;
    load_str(&text, &path.display().to_string(), &ProcessEnv)
}

/// Loads and validates a config from `text`. `origin` names it in errors (usually the file name);
/// `${VAR}` references are resolved with `env`.
pub fn load_str(text: &str, origin: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
    load::load_str(text, origin, env)
}

/// [`load_str`] with the process environment: for embedded configs.
pub fn from_str_default_env(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load_str(text, origin, &ProcessEnv)
}

#[cfg(test)]
mod tests;
