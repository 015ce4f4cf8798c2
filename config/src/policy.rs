//! `policies:`: what the aggregator's engine scales and how it reads its metrics.
//!
//! A policy is written the way users already write autoscaling: a real `autoscaling/v2`
//! HorizontalPodAutoscaler or a KEDA `ScaledObject` manifest, plus the PromQL each of its metrics resolves
//! to against the aggregator's cache. The manifests and queries are checked by the aggregator when it builds
//! the policies (with this file's positions, through [`crate::Config::error_at`]); this crate checks shape.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a decision takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActuationMode {
    /// Decisions are computed, logged, exported and shown, and applied to a virtual replica count only.
    #[default]
    DryRun,
    /// Patch the target's `/scale` subresource (only the Lease leader does).
    Scale,
    /// Only serve the metric values to a real HPA through the external/custom metrics APIs.
    Hpa,
}

/// One autoscaling policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name; decisions and `surge explain` use it. Defaults to the manifest's `namespace/name`.
    #[serde(default)]
    pub name: String,
    /// `dry-run` (default), `scale` or `hpa`.
    #[serde(default)]
    pub mode: ActuationMode,
    /// A real `autoscaling/v2` HorizontalPodAutoscaler manifest (YAML text). Exactly one of `hpa` and
    /// `scaled_object` is set.
    #[serde(default)]
    pub hpa: Option<String>,
    /// A real KEDA `ScaledObject` manifest (YAML text).
    #[serde(default)]
    pub scaled_object: Option<String>,
    /// PromQL per metric: HPA metric name (External, Pods, Object; `cpu`/`memory` for Resource metrics)
    /// or KEDA trigger name. A KEDA `prometheus` trigger's own `metadata.query` is used when not listed.
    /// Per-pod metrics must return one series per pod with a `pod` label.
    #[serde(default)]
    pub metrics: BTreeMap<String, String>,
    /// At most one evaluation per this interval; ingest triggers evaluations, so this bounds thrash. It is
    /// also the longest a sample waits for its decision, so keep it well under the scrape interval.
    #[serde(default = "default_min_interval", with = "crate::duration")]
    pub min_interval: Duration,
    /// Re-evaluate at least this often even without new samples (so stale inputs are noticed).
    #[serde(default = "default_fallback_interval", with = "crate::duration")]
    pub fallback_interval: Duration,
    /// Windows that raise the minimum before known peaks (CronHPA-style); the highest open window wins.
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// Dry-run only: the replica count the virtual workload starts with (it then follows the decisions).
    #[serde(default = "default_replicas")]
    pub initial_replicas: i32,
    /// Record each decision that changes the replica count as a Kubernetes Event on the target
    /// workload, in every mode, so `kubectl describe` shows it. In `scale` mode each `/scale` patch is
    /// recorded as the HPA controller's `SuccessfulRescale` Event whatever this says; in `dry-run` mode
    /// a decision is recorded as `DryRunRescale`, in `hpa` mode as `SurgeRecommendation`, both with a
    /// message like the HPA's prefixed with `dry-run:` (`dry-run: New size: 5; reason: …`). Only the
    /// Lease leader records them; a dry-run or hpa policy with `events` needs a cluster (in-cluster or
    /// `$KUBECONFIG`) like a `scale` one does.
    #[serde(default)]
    pub events: bool,
}

fn default_min_interval() -> Duration {
    Duration::from_millis(20)
}

fn default_fallback_interval() -> Duration {
    Duration::from_secs(15)
}

fn default_replicas() -> i32 {
    1
}

/// A scheduled floor: from each time the cron `start` fires, for `duration`, the policy's minimum is at
/// least `min_replicas`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// 5-field cron (`minute hour day-of-month month day-of-week`), e.g. `"45 8 * * 1-5"`.
    pub start: String,
    /// How long the window stays open, e.g. `2h` or `90m`.
    pub duration: String,
    /// The minimum while the window is open.
    pub min_replicas: i32,
    /// `UTC` (default), a fixed offset such as `+02:00`, or an IANA name such as `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

#[cfg(test)]
mod tests {
    use crate::{MapEnv, load_str};

    fn policy(extra: &str) -> String {
        format!("policies:\n  - hpa: \"kind: HorizontalPodAutoscaler\"\n    mode: dry-run\n{extra}")
    }

    #[test]
    fn events_default_off_and_can_be_turned_on() {
        let env = MapEnv::new();
        let off = load_str(&policy(""), "surge.yaml", &env).unwrap();
        assert!(!off.policies[0].events);
        let on = load_str(&policy("    events: true\n"), "surge.yaml", &env).unwrap();
        assert!(on.policies[0].events);
        let bad = load_str(&policy("    events: sometimes\n"), "surge.yaml", &env).unwrap_err();
        assert!(
            bad.to_lines()[0].starts_with("surge.yaml:4:"),
            "{:?}",
            bad.to_lines()
        );
    }
}
