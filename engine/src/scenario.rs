//! What-if scenarios: a policy, an initial state and a timeline, replayed through the engine.
//!
//! [`parse`] reads a scenario file (YAML, unknown fields rejected) into a [`Scenario`]; [`simulate`]
//! replays it and returns one [`Step`] per evaluation. `surge simulate` prints the steps; the aggregator
//! can run the same code for what-if questions, since nothing here does I/O or reads a clock.
//!
//! The user-facing format is the [`ScenarioFile`] type and the types it holds: their doc comments are the
//! documentation of every field. In short:
//!
//! ```yaml
//! policy:
//!   hpa: |                       # or `scaledObject: |`: a real manifest, as a block string
//!     apiVersion: autoscaling/v2
//!     kind: HorizontalPodAutoscaler
//!     ...
//!   # cluster: |                 # with scaledObject: the objects KEDA's webhook reads (other HPAs and
//!   #   ...                      # ScaledObjects, the Deployment, LimitRanges), `---`-separated
//! schedules: [{start: "0 9 * * MON-FRI", duration: 8h, min_replicas: 10}]
//! sync_period: 15s
//! start: 2026-01-05T08:55:00Z
//! initial: {replicas: 3, pod_template: {requests: {cpu: 500m}}}
//! new_pods: {ready_after: 20s}
//! timeline:
//!   - at: 0s
//!     metrics: {cpu: 450m}
//! end: 10m
//! ```
//!
//! What the HPA reads beyond that (see the field docs):
//!
//! ```yaml
//! history:                       # the controller's memory before 0s
//!   recommendations: [{at: -2m, replicas: 8}]
//!   scale_up_events: [{at: -30s, change: 4}]
//!   scale_down_events: [{at: -1m, change: 2}]
//! sample_window: 1m              # per-pod samples' window (default 30s)
//! initial:
//!   replicas: 3
//!   pod_template:
//!     containers: [{name: app, requests: {cpu: 400m}}]
//!     init_containers:           # sidecars (restart_policy: Always) count in the request
//!       - {name: envoy, restart_policy: Always, requests: {cpu: 100m}}
//!     resources: {requests: {cpu: "1"}}   # pod-level spec.resources (wins for Resource metrics)
//!     overhead: {cpu: 50m}       # spec.overhead, added to pod-level requests
//!   scale:                       # the /scale selector, checked as upstream (InvalidSelector,
//!     selector: app=web          # AmbiguousSelector); without it the selector is not checked
//!     pod_labels: {app: web}
//!     other_hpas: [{key: shop/web-canary, selector: app=web}]
//! timeline:
//!   - at: 0s
//!     metrics:                   # a per-pod value may carry its own timestamp and window
//!       cpu: {"*": 300m, web-2: {value: 900m, timestamp: -10s, window: 1m}}
//!     fail_scale_get: timeout    # the next evaluation's /scale read fails (FailedGetScale);
//!     # fail_scale_update: ...   # or its update, if it scales (FailedUpdateScale)
//! ```
//!
//! Values are Kubernetes quantities read as the HPA reads them (`MilliValue()`): exact int64 milli-units,
//! saturated beyond the range (`9223372036854775807m`, `10E`, `1e30` are all `MaxInt64`). NaN and
//! infinities are refused with the reason (no quantity carries them); `error` makes a metric fail.
//!
//! **Simulation model** (what the engine does not decide, the simulator must; each choice is documented
//! where it is made):
//! - Evaluations run at `0, sync_period, 2·sync_period, … ≤ end`, and also at every timeline entry when
//!   `evaluate_on_change` is set (surge's evaluate-on-ingest mode). Timeline entries at or before an
//!   evaluation's time are applied before it.
//! - A decision is applied at once, like a ReplicaSet: a scale-up creates pods (Pending, then Running and
//!   Ready after `new_pods` delays), a scale-down removes pods at once, least valuable first (Pending,
//!   then unready, then the newest), as the ReplicaSet controller ranks them.
//! - Per-pod samples are stamped with the evaluation time and a 30 s window (metrics-server's;
//!   `sample_window` changes it, and a value may give its own `timestamp` and `window`), which the HPA's
//!   CPU readiness rules compare with the pods' readiness transitions.
//! - `history` seeds the controller's memory; without it the replay starts as a fresh controller.

pub mod job;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::tz;
use jiff::{SignedDuration, civil};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::decision::{Decision, PodCounts, PodGroupNames};
use crate::hpa::{
    self, ConditionStatus, ContainerRequests, HpaInput, HpaSpec, HpaState, InitContainerRequests,
    MetricSample, MetricSource, MetricTarget, OtherHpa, PodInfo, PodMetric, PodPhase, ScaleAccess,
    ScaleEvent, TimestampedRecommendation,
};
use crate::keda::cluster::ClusterView;
use crate::keda::manifest::ScaledObjectStatusInput;
use crate::keda::selector::LabelSelector;
use crate::keda::{self, KedaInput, KedaState, ScaledObjectSpec, TriggerValue};
use crate::manifest::{self, ManifestError};
use crate::quantity::{QuantityError, parse_milli, sample_milli};
use crate::schedule::{Schedule, ScheduleError};

/// The most evaluations one scenario may ask for (`end / sync_period`): bounds the work of a replay.
pub const MAX_EVALUATIONS: i64 = 100_000;
/// The most replicas a scenario may reach: the simulator holds one pod per replica.
pub const MAX_SIMULATED_REPLICAS: i32 = 10_000;
/// The window stamped on simulated per-pod samples (metrics-server's resolution).
pub const SAMPLE_WINDOW_MS: i64 = 30_000;
/// When initial pods started, unless they say otherwise: long enough ago that no CPU initialization rule
/// applies to them.
pub const DEFAULT_INITIAL_START_MS: i64 = -3_600_000;

// ---- The scenario file, as users write it ----

/// A scenario file. Every time in it is scenario time: an offset from the start of the replay (`0s`),
/// written as a duration (`30s`, `-2m`, `1m30s`, `500ms`, or `0`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The autoscaling policy replayed.
    pub policy: PolicyConfig,
    /// Cron windows that raise the minimum replica count (the CronHPA case).
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    /// How often the engine evaluates (default `15s`, the HPA controller's sync period).
    pub sync_period: Option<Offset>,
    /// Also evaluate at every timeline entry, as surge's aggregator does on ingest (default `false`:
    /// evaluate on the sync period only, as kube-controller-manager does).
    #[serde(default)]
    pub evaluate_on_change: bool,
    /// The wall-clock time of `0s`, RFC 3339 (`2026-01-05T08:55:00Z`); cron schedules are matched against
    /// it. Default: the Unix epoch.
    pub start: Option<Timestamp>,
    /// kube-controller-manager flags, when the scenario needs other than the defaults.
    pub controller: Option<ControllerFlags>,
    /// The target's state at `0s`.
    pub initial: InitialConfig,
    /// How pods created by a scale-up behave.
    #[serde(default)]
    pub new_pods: NewPodsConfig,
    /// Metric values and pod changes, applied at their time, in time order. A metric value holds until a
    /// later entry changes it; before its first value a metric is failing.
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// When the replay stops (inclusive).
    pub end: Offset,
    /// The HPA's memory before `0s`: past recommendations (read by the stabilization windows) and past
    /// scale events (read by `behavior` rate policies), seeded at their times (`0s` or earlier). Without
    /// it the replay starts as a fresh controller does: one recommendation, the current replica count,
    /// at the first evaluation. For a ScaledObject it seeds the HPA KEDA generates.
    pub history: Option<HistoryConfig>,
    /// The window every per-pod sample covers unless its value says otherwise (default `30s`,
    /// metrics-server's resolution); the HPA's CPU readiness rules compare it with readiness transitions.
    pub sample_window: Option<Offset>,
}

/// The controller's memory at `0s`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Past recommendations: `[{at: -2m, replicas: 8}, …]`.
    #[serde(default)]
    pub recommendations: Vec<SeededRecommendation>,
    /// Past scale-ups: `[{at: -30s, change: 4}, …]` (replicas added).
    #[serde(default)]
    pub scale_up_events: Vec<SeededEvent>,
    /// Past scale-downs: `[{at: -1m, change: 2}, …]` (replicas removed).
    #[serde(default)]
    pub scale_down_events: Vec<SeededEvent>,
}

/// A recommendation the controller made before `0s`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeededRecommendation {
    /// When (`0s` or earlier).
    pub at: Offset,
    /// The recommended replica count.
    pub replicas: i32,
}

/// A scale event before `0s`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeededEvent {
    /// When (`0s` or earlier).
    pub at: Offset,
    /// Replicas added (scale-up) or removed (scale-down); positive.
    pub change: i32,
}

/// The policy: exactly one of `hpa` or `scaledObject`.
///
/// surge has no policy form of its own yet (the engine's inputs are the two manifests), so there is no
/// `surge:` variant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// An `autoscaling/v2` `HorizontalPodAutoscaler` manifest, as a YAML block string (`hpa: |`).
    pub hpa: Option<String>,
    /// A KEDA `ScaledObject` manifest, as a YAML block string (`scaledObject: |`; `scaled_object`, the
    /// spelling of surge's config file, is accepted too).
    #[serde(rename = "scaledObject", alias = "scaled_object")]
    pub scaled_object: Option<String>,
    /// The Kubernetes objects of the ScaledObject's namespace that KEDA's admission webhook reads, as a
    /// YAML block string of `---`-separated manifests (HorizontalPodAutoscalers, other ScaledObjects,
    /// the Deployment or StatefulSet, LimitRanges, CustomResourceDefinitions; see
    /// [`crate::keda::cluster`]). When given, the ScaledObject and every change of it in the timeline
    /// are admitted against them as the webhook would; without it those checks are not made.
    pub cluster: Option<String>,
}

/// A scheduled minimum: from every firing of `start`, for `duration`, at least `min_replicas`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A 5-field cron expression (`minute hour day-of-month month day-of-week`), e.g. `0 9 * * MON-FRI`.
    pub start: String,
    /// How long each window stays open, e.g. `8h`, `1h30m`.
    pub duration: String,
    /// The minimum while a window is open.
    pub min_replicas: i32,
    /// The cron fields' time zone: `UTC` (default), a fixed offset such as `+02:00`, or an IANA name such as `Europe/Berlin`.
    pub time_zone: Option<String>,
}

/// kube-controller-manager flags; each defaults to upstream's default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerFlags {
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: Option<f64>,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (`5m`).
    pub cpu_initialization_period: Option<Offset>,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (`30s`).
    pub initial_readiness_delay: Option<Offset>,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (`5m`).
    pub downscale_stabilization: Option<Offset>,
}

/// The target at `0s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitialConfig {
    /// `scale.spec.replicas`. Default: the number of `pods`.
    pub replicas: Option<i32>,
    /// KEDA `kubernetes-workload` triggers: the namespace's labelled pods (not the target's), counted by
    /// the trigger's `podSelector`. A trigger with a value in `metrics` uses that value instead.
    #[serde(default)]
    pub labelled_pods: Vec<LabelledPodsConfig>,
    /// Explicit pods (any number: upstream's test tables often list fewer or more pods than replicas).
    pub pods: Option<Vec<PodConfig>>,
    /// HPA: the target's `/scale` selector and the namespace's other HPAs, checked as upstream's
    /// `validateAndParseSelector` does. Without it the selector is not checked.
    pub scale: Option<ScaleConfig>,
    /// A template for `replicas` identical pods named `<target>-0`, `<target>-1`, … (`name` not allowed).
    /// Without `pods` or `pod_template`, `replicas` pods are made from an empty template.
    pub pod_template: Option<PodConfig>,
}

/// The target's `/scale` subresource as an HPA replay reads it, and the other HPAs of the namespace
/// (see [`crate::hpa::ScaleAccess`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// `scale.status.selector` as the read returns it, in string form (`name=web`); `""`: the target
    /// has none (`InvalidSelector`).
    pub selector: String,
    /// The labels every pod of the target carries (its template's), matched against `other_hpas`.
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
    /// The other HPAs of the namespace, `{key: <namespace>/<name>, selector: ...}`: one whose selector
    /// matches the target's pods makes the selector ambiguous (`AmbiguousSelector`).
    #[serde(default)]
    pub other_hpas: Vec<OtherHpa>,
}

/// A pod, or a change to one (in the timeline, only the fields given change).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodConfig {
    /// The pod's name: the key of per-pod metric values.
    pub name: Option<String>,
    /// `status.phase`: `Pending`, `Running` (default), `Succeeded`, `Failed`, `Unknown`.
    pub phase: Option<PodPhase>,
    /// The `Ready` condition: `true` (default for Running pods), `false`, `Unknown`, or `none` (no
    /// condition at all).
    pub ready: Option<Readiness>,
    /// The `Ready` condition's last transition. Default: `started` for a new pod, the change's time when a
    /// timeline entry flips `ready`.
    pub ready_since: Option<Offset>,
    /// `status.startTime`, or `none` for a pod not started. Default: `-1h` for initial pods, the entry's
    /// time for pods a timeline entry creates.
    pub started: Option<StartTime>,
    /// `metadata.deletionTimestamp` is set (the HPA ignores the pod).
    pub deleting: Option<bool>,
    /// Resource requests of the pod's single container `main`, e.g. `{cpu: 500m, memory: 1Gi}`.
    pub requests: Option<BTreeMap<String, Quantity>>,
    /// Containers with their requests, for ContainerResource metrics (instead of `requests`).
    pub containers: Option<Vec<ContainerConfig>>,
    /// `spec.initContainers`. Sidecars (`restart_policy: Always`) count in the HPA's requests beside the
    /// containers; plain init containers only in a pod-level aggregate.
    pub init_containers: Option<Vec<InitContainerConfig>>,
    /// Pod-level `spec.resources` (Kubernetes 1.32+), e.g. `{requests: {cpu: "1"}}`: when it sets a
    /// cpu, memory or hugepages request, the HPA's Resource metrics use the pod-level requests instead of
    /// the containers' (ContainerResource metrics keep the container's).
    pub resources: Option<PodResourcesConfig>,
    /// `spec.overhead` (what the RuntimeClass adds), e.g. `{cpu: 100m}`: counted with pod-level requests.
    pub overhead: Option<BTreeMap<String, Quantity>>,
}

/// Pod-level `spec.resources`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodResourcesConfig {
    /// `spec.resources.requests`.
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
}

/// One init container of a pod.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitContainerConfig {
    /// Container name.
    pub name: String,
    /// Resource requests, e.g. `{cpu: 50m}`.
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    /// `Always` for a sidecar (a restartable init container); absent for a plain init container.
    pub restart_policy: Option<RestartPolicy>,
}

/// An init container's `restartPolicy`: Kubernetes allows only `Always`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RestartPolicy {
    /// A sidecar: started before the containers and kept running beside them.
    Always,
}

/// A group of identical labelled pods (for KEDA's `kubernetes-workload` trigger).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledPodsConfig {
    /// `metadata.labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How many such pods.
    pub count: u32,
    /// `status.phase` (default `Running`); Succeeded and Failed pods are not counted.
    pub phase: Option<PodPhase>,
    /// `spec.nodeName` (for `groupByNode`).
    pub node: Option<String>,
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// Container name.
    pub name: String,
    /// Resource requests, e.g. `{cpu: 250m}`.
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
}

/// How pods created by a scale-up behave. They are Pending from their creation, then Running (not ready),
/// then Running and Ready.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPodsConfig {
    /// Delay from creation to Running and Ready (`0`, the default, is at once: the next evaluation sees a
    /// ready pod).
    pub ready_after: Option<Offset>,
    /// Delay from creation to Running (its `startTime`); default `ready_after`.
    pub running_after: Option<Offset>,
    /// Requests of the single container `main`. Default: those of the pod template, else of the first
    /// initial pod.
    pub requests: Option<BTreeMap<String, Quantity>>,
    /// Containers with their requests (instead of `requests`).
    pub containers: Option<Vec<ContainerConfig>>,
    /// Init containers (default: the template's, as `containers`).
    pub init_containers: Option<Vec<InitContainerConfig>>,
    /// Pod-level resources (default: the template's).
    pub resources: Option<PodResourcesConfig>,
    /// Pod overhead (default: the template's).
    pub overhead: Option<BTreeMap<String, Quantity>>,
}

/// Changes at one time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    /// When the changes apply.
    pub at: Offset,
    /// Metric values by key. The key is the metric's name in the policy: `cpu`/`memory` for
    /// Resource and ContainerResource metrics, `metric.name` for Pods, Object and External metrics, a
    /// KEDA trigger's `name` (or its index, `0`, `1`, …).
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricValue>,
    /// Pods to create or change (matched by name; only the given fields change).
    #[serde(default)]
    pub pods: Vec<PodConfig>,
    /// Pods that disappear.
    #[serde(default)]
    pub deletes: Vec<String>,
    /// Sets `scale.spec.replicas` by hand (as `kubectl scale` does); pods follow.
    pub replicas: Option<i32>,
    /// KEDA: the ScaledObject as edited at this time (`kubectl apply` of a new version: annotations added
    /// or removed, fields changed), a whole manifest as a block string. Metric keys are checked against
    /// the first version's triggers.
    /// The ScaledObject's status (health, lastActiveTime, conditions) and the generated HPA's history carry
    /// over, as they do in a cluster.
    #[serde(rename = "scaledObject", alias = "scaled_object")]
    pub scaled_object: Option<String>,
    /// KEDA: replaces the labelled pod population (see `initial.labelled_pods`).
    pub labelled_pods: Option<Vec<LabelledPodsConfig>>,
    /// HPA: replaces `initial.scale` (the target's `/scale` selector and the other HPAs).
    pub scale: Option<ScaleConfig>,
    /// HPA: the next evaluation's `/scale` read fails with this error (`FailedGetScale`).
    pub fail_scale_get: Option<String>,
    /// HPA: the next evaluation's `/scale` update, if it scales, fails with this error
    /// (`FailedUpdateScale`: the replicas stay).
    pub fail_scale_update: Option<String>,
}

/// A metric's value from a timeline entry on. Numbers and Kubernetes quantities (`450m`, `2k`) are both
/// accepted; values are in the metric's base unit (cores for `cpu`, bytes for `memory`).
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// `450m`: for a per-pod metric, every running pod's value; otherwise the metric's value.
    Scalar(i64),
    /// `[10, 20]`: the series of an External metric (the HPA sums them; `[]` is an error, as upstream).
    Series(Vec<i64>),
    /// `{web-0: 400m, web-1: 450m, "*": 300m}`: per-pod values; `*` gives every other running pod a
    /// value; pods without one are missing, in the HPA's terms. A value may say when its sample was
    /// taken and what window it covers: `{web-0: {value: 400m, timestamp: -10s, window: 1m}}`
    /// (`timestamp` is scenario time; default: each evaluation's time, `window` default
    /// `sample_window`).
    PerPod {
        /// Values by pod name.
        values: BTreeMap<String, PodValue>,
        /// The `*` value.
        default: Option<PodValue>,
    },
    /// `{total: 2700m}`: a per-pod metric's total load, shared evenly by the running, ready pods (as a
    /// Service spreads requests); other pods report nothing.
    Total(i64),
    /// `error` or `"error: message"`: the metric source fails.
    Error(String),
    /// `build-error` or `"build-error: message"`: a KEDA trigger's scaler cannot be built (bad metadata,
    /// missing credentials), which KEDA handles differently from a failed read.
    BuildError(String),
}

/// One pod's value in a [`MetricValue::PerPod`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodValue {
    /// Milli-units.
    pub milli: i64,
    /// When the sample was taken (scenario ms); `None`: at each evaluation.
    pub timestamp: Option<i64>,
    /// The window it covers (ms); `None`: the scenario's `sample_window`.
    pub window: Option<i64>,
}

/// A signed duration in milliseconds, written `30s`, `-2m`, `1h30m`, `500ms`, or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offset(pub i64);

/// A pod's start time: a scenario time, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTime {
    /// Started at this scenario time (ms).
    At(i64),
    /// `status.startTime` unset.
    Unset,
}

/// A `Ready` condition: its status, or `None` for no condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness(pub Option<ConditionStatus>);

/// A quantity in milli-units, written as a number or a Kubernetes quantity string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(pub i64);

/// An RFC 3339 timestamp, ms since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

// ---- The scenario, validated ----

/// A validated scenario: absolute times in ms since the Unix epoch, durations in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The policy.
    pub policy: Policy,
    /// `<namespace>/<scaleTargetRef.name>`.
    pub workload: String,
    /// The prefix of generated pod names (`scaleTargetRef.name`).
    pub pod_prefix: String,
    /// Scheduled minimums.
    pub schedules: Vec<Schedule>,
    /// Evaluation period, ms.
    pub sync_period_ms: i64,
    /// Evaluate at timeline entries too.
    pub evaluate_on_change: bool,
    /// Wall-clock time of scenario time 0, ms since the epoch.
    pub start_ms: i64,
    /// Replicas at 0.
    pub initial_replicas: i32,
    /// Pods at 0 (absolute times).
    pub initial_pods: Vec<PodInfo>,
    /// How created pods behave.
    pub new_pods: NewPods,
    /// Changes, in time order (`at` is scenario time, ms).
    pub timeline: Vec<Change>,
    /// Last scenario time evaluated, ms.
    pub end_ms: i64,
    /// KEDA: the ScaledObject's `creationTimestamp`, `status.lastActiveTime` and `status.health` as its
    /// manifest gives them (absolute times).
    pub keda_status: ScaledObjectStatusInput,
    /// KEDA: the labelled pods at 0.
    pub labelled_pods: Vec<LabelledPodsConfig>,
    /// HPA: the `/scale` selector and other HPAs at 0 (`None`: not checked).
    pub scale: Option<ScaleConfig>,
    /// The controller memory seeded from `history` (absolute times); the default state without it.
    pub history: HpaState,
    /// The window of per-pod samples that do not give theirs, ms.
    pub sample_window_ms: i64,
}

/// The policy replayed.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// An HPA.
    Hpa(HpaSpec),
    /// A KEDA ScaledObject.
    ScaledObject(ScaledObjectSpec),
}

/// How created pods behave.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPods {
    /// Creation to Running, ms.
    pub running_after_ms: i64,
    /// Creation to Ready, ms.
    pub ready_after_ms: i64,
    /// Their containers.
    pub containers: Vec<ContainerRequests>,
    /// Their init containers.
    pub init_containers: Vec<InitContainerRequests>,
    /// Their pod-level requests.
    pub pod_requests: Option<BTreeMap<String, i64>>,
    /// Their overhead.
    pub overhead: BTreeMap<String, i64>,
}

/// One timeline entry, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Scenario time, ms.
    pub at_ms: i64,
    /// New metric values by key.
    pub metrics: BTreeMap<String, MetricValue>,
    /// Pod upserts.
    pub pods: Vec<PodConfig>,
    /// Pod deletions.
    pub deletes: Vec<String>,
    /// Manual replica count.
    pub replicas: Option<i32>,
    /// A new version of the ScaledObject.
    pub scaled_object: Option<Box<ScaledObjectSpec>>,
    /// A new labelled pod population.
    pub labelled_pods: Option<Vec<LabelledPodsConfig>>,
    /// A new `/scale` selector and other HPAs.
    pub scale: Option<ScaleConfig>,
    /// The next evaluation's `/scale` read fails with this error.
    pub fail_scale_get: Option<String>,
    /// The next evaluation's `/scale` update fails with this error.
    pub fail_scale_update: Option<String>,
}

/// One evaluation of the replay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Scenario time, seconds.
    pub time_s: f64,
    /// `<namespace>/<name>` of the target.
    pub workload: String,
    /// Replicas before the step.
    pub replicas_before: i32,
    /// Replicas after the step.
    pub replicas: i32,
    /// What the metrics asked for, before stabilization, rate limits and min/max. When the metrics were
    /// not consulted or could not be used, the decided count: the KEDA executor's, min or max when the
    /// current count was outside them, the current count when every metric failed.
    pub desired: i32,
    /// The effective minimum (after schedules).
    pub min_replicas: i32,
    /// One line saying what happened and why.
    pub reason: String,
    /// Per metric of the policy: current value against target.
    pub metrics: Vec<MetricReading>,
    /// The seeded `history` entries this evaluation's stabilization and rate rules read, e.g.
    /// `recommendation 8 at -1m`, `scale-down 2 at -30s` (empty once they have aged out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seeded_history: Vec<String>,
    /// The engine's full decision.
    pub decision: Decision,
}

/// One metric's reading in a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricReading {
    /// The scenario's key for the metric.
    pub metric: String,
    /// The current value (`90%` for utilization, else a decimal number: the per-pod average for per-pod
    /// and AverageValue targets), when known.
    pub current: Option<String>,
    /// The target (`50%`, `10`, `0.5 per pod`).
    pub target: String,
    /// The replica count this metric proposed.
    pub proposal: Option<i32>,
    /// Why the metric could not be used.
    pub error: Option<String>,
    /// How the pods were grouped for a per-pod metric: `ready 3, unready 1 (web-3), missing 0, ignored
    /// 0`, also when no proposal was made.
    pub pods: Option<String>,
}

/// Why a scenario was rejected: every problem found, each with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_problems(.problems))]
pub struct ScenarioError {
    /// The problems, in file order where known.
    pub problems: Vec<Problem>,
}

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the scenario file (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// The field, e.g. `timeline[2].metrics.cpu` (empty for the document itself).
    pub field: String,
    /// What is wrong, with the offending input.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

fn display_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- Scalar forms ----

/// Parses a signed duration (`-1m30s`, `500ms`, `0`) into ms.
pub fn parse_offset(text: &str) -> Result<i64, String> {
    let err = || format!("{text:?} is not a duration (e.g. 30s, -2m, 1m30s, 500ms)");
    let t = text.trim();
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if rest == "0" {
        return Ok(0);
    }
    let total = crate::schedule::duration_ms(rest).ok_or_else(err)?;
    Ok(if negative { -total } else { total })
}

/// Parses an RFC 3339 timestamp (`2026-01-05T08:55:00Z`, `2026-01-05T10:55:00.5+02:00`) into ms since
/// the Unix epoch; digits past the millisecond are dropped.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let err = || format!("{text:?} is not an RFC 3339 time (e.g. 2026-01-05T08:55:00Z)");
    let written = WrittenTime::scan(text.trim()).ok_or_else(err)?;
    written.to_millisecond().ok_or_else(err)
}

/// An RFC 3339 time's fields as written, before the calendar gives them a meaning.
///
/// Scenario files written for the first, hand-written parser must keep their meaning, so this accepts
/// exactly what it accepted, which jiff's parser (`Timestamp::from_str`) does not: fields of any width
/// (`2026-1-5`), any `±hh:mm` offset (`+26:00`, `+00:60`), anything after a fraction's first three
/// digits (`.1234567890`, `.123xyz`), a day past its month's end and second 60 (both roll over; jiff
/// rejects the first and clamps the second to :59). It rejects what jiff's parser would add: times without seconds,
/// offsets without a colon or with seconds, the basic format (`20260105T085500Z`), signed or six-digit
/// years, comma fractions, bracketed annotations (`[Europe/Paris]`). jiff does the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WrittenTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    millisecond: i64,
    /// East of UTC.
    offset_minutes: i64,
}

impl WrittenTime {
    /// Splits `<date>[Tt ]<time>(Z|±hh:mm)` into numbers; `None` when the shape is wrong.
    fn scan(t: &str) -> Option<Self> {
        let num = |s: &str| -> Option<i64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let (date, time) = t.split_once(['T', 't', ' '])?;
        let mut d = date.splitn(3, '-');
        let (year, month, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
        let (clock, offset_minutes) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else {
            let (c, off) = time.split_at(time.rfind(['+', '-'])?);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':')?;
            (c, sign * num(oh)?.checked_mul(60)?.checked_add(num(om)?)?)
        };
        let mut c = clock.splitn(3, ':');
        let (hour, minute, s) = (num(c.next()?)?, num(c.next()?)?, c.next()?);
        let (second, fraction) = s.split_once('.').unwrap_or((s, ""));
        let second = num(second)?;
        // Only the first three fraction digits are read (`.5` is 500 ms); the rest are not looked at.
        let millisecond = if fraction.is_empty() {
            0
        } else {
            num(format!("{fraction:0<3}").get(..3)?)?
        };
        Some(Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
            millisecond,
            offset_minutes,
        })
    }

    /// The instant written, in ms since the Unix epoch; `None` when a field is out of range or the
    /// instant lies outside jiff's range (years ±9999).
    fn to_millisecond(self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || !(1..=31).contains(&self.day)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        let first_of_month = civil::Date::new(
            i16::try_from(self.year).ok()?,
            i8::try_from(self.month).ok()?,
            1,
        )
        .ok()?;
        let month_start = tz::Offset::UTC
            .to_timestamp(first_of_month.to_datetime(civil::Time::midnight()))
            .ok()?;
        // The rest is time elapsed since the month began (UTC days and minutes have a fixed length), so a
        // day past the month's end and second 60 roll over rather than fail.
        let minutes = ((self.day - 1) * 24 + self.hour) * 60 + self.minute;
        let elapsed_ms = minutes
            .checked_sub(self.offset_minutes)?
            .checked_mul(60_000)?
            .checked_add(self.second * 1000 + self.millisecond)?;
        let instant = month_start
            .checked_add(SignedDuration::from_millis(elapsed_ms))
            .ok()?;
        Some(instant.as_millisecond())
    }
}

struct OffsetVisitor;

impl Visitor<'_> for OffsetVisitor {
    type Value = Offset;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 30s, -2m, 1m30s, 500ms")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Offset, E> {
        if v == 0 {
            Ok(Offset(0))
        } else {
            Err(E::custom(format!(
                "{v} has no unit: write a duration such as {v}s"
            )))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Offset, E> {
        self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Offset, E> {
        parse_offset(v).map(Offset).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OffsetVisitor)
    }
}

impl<'de> Deserialize<'de> for StartTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StartTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as -2m, or none")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StartTime, E> {
                OffsetVisitor.visit_i64(v).map(|o| StartTime::At(o.0))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StartTime, E> {
                OffsetVisitor.visit_u64(v).map(|o| StartTime::At(o.0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StartTime, E> {
                if v.eq_ignore_ascii_case("none") {
                    return Ok(StartTime::Unset);
                }
                OffsetVisitor.visit_str(v).map(|o| StartTime::At(o.0))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Readiness {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Readiness;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, Unknown or none")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Readiness, E> {
                Ok(Readiness(Some(if v {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                })))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Readiness, E> {
                match v.to_ascii_lowercase().as_str() {
                    "true" => self.visit_bool(true),
                    "false" => self.visit_bool(false),
                    "unknown" => Ok(Readiness(Some(ConditionStatus::Unknown))),
                    "none" => Ok(Readiness(None)),
                    _ => Err(E::custom(format!(
                        "{v:?} is not a readiness (true, false, Unknown or none)"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole number: its `MilliValue()`, saturated at the `i64` range as apimachinery saturates it.
fn quantity_from_i64<E: de::Error>(v: i64) -> Result<i64, E> {
    Ok(v.saturating_mul(1000))
}

/// A YAML float: NaN and infinities are refused (no Kubernetes quantity carries them, so no metrics API
/// can serve them; write `error` to make a metric fail); a finite value beyond the range saturates.
fn quantity_from_f64<E: de::Error>(v: f64) -> Result<i64, E> {
    sample_milli(v).map_err(|e| E::custom(format!("{e}; to make the metric fail, write error")))
}

fn quantity_from_str<E: de::Error>(v: &str) -> Result<i64, E> {
    parse_milli(v).map_err(|e: QuantityError| E::custom(e))
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a Kubernetes quantity (e.g. 500m, 10, 2k, 1Gi)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                quantity_from_i64(v).map(Quantity)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                quantity_from_f64(v).map(Quantity)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                quantity_from_str(v).map(Quantity)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The check runs inside the visitor, so the parser places its error on this node.
        struct V;
        impl Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time such as 2026-01-05T08:55:00Z")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                parse_timestamp(v).map(Timestamp).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for MetricValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetricValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a quantity (450m), a list of quantities, a map of pod name to quantity, {total: <quantity>}, or error",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MetricValue, E> {
                Quantity::deserialize(de::value::I64Deserializer::<E>::new(v))
                    .map(|q| MetricValue::Scalar(q.0))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MetricValue, E> {
                Quantity::deserialize(de::value::U64Deserializer::<E>::new(v))
                    .map(|q| MetricValue::Scalar(q.0))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MetricValue, E> {
                quantity_from_f64(v).map(MetricValue::Scalar)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MetricValue, E> {
                let t = v.trim();
                if t == "error" {
                    return Ok(MetricValue::Error(
                        "the metric source failed (scenario)".to_owned(),
                    ));
                }
                if let Some(message) = t.strip_prefix("error:") {
                    return Ok(MetricValue::Error(message.trim().to_owned()));
                }
                if t == "build-error" {
                    return Ok(MetricValue::BuildError(
                        "the scaler could not be built (scenario)".to_owned(),
                    ));
                }
                if let Some(message) = t.strip_prefix("build-error:") {
                    return Ok(MetricValue::BuildError(message.trim().to_owned()));
                }
                quantity_from_str(t).map(MetricValue::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MetricValue, A::Error> {
                let mut values = Vec::new();
                while let Some(q) = seq.next_element::<Quantity>()? {
                    values.push(q.0);
                }
                Ok(MetricValue::Series(values))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetricValue, A::Error> {
                let mut values = BTreeMap::new();
                let mut default = None;
                let mut total = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "total" {
                        total = Some(map.next_value::<Quantity>()?.0);
                        continue;
                    }
                    let v = map.next_value::<PodValue>()?;
                    if key == "*" {
                        default = Some(v);
                    } else {
                        values.insert(key, v);
                    }
                }
                match total {
                    Some(t) if values.is_empty() && default.is_none() => Ok(MetricValue::Total(t)),
                    Some(_) => Err(de::Error::custom(
                        "`total` shares a value among the pods: it cannot be mixed with per-pod values",
                    )),
                    None => Ok(MetricValue::PerPod { values, default }),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for PodValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            value: Quantity,
            timestamp: Option<Offset>,
            window: Option<Offset>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PodValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a quantity, or {value: <quantity>, timestamp: <time>, window: <duration>}",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PodValue, E> {
                quantity_from_i64(v).map(PodValue::at_evaluation)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PodValue, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PodValue, E> {
                quantity_from_f64(v).map(PodValue::at_evaluation)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PodValue, E> {
                quantity_from_str(v).map(PodValue::at_evaluation)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PodValue, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if let Some(w) = full.window
                    && w.0 <= 0
                {
                    return Err(de::Error::custom("window: must be greater than 0"));
                }
                Ok(PodValue {
                    milli: full.value.0,
                    timestamp: full.timestamp.map(|o| o.0),
                    window: full.window.map(|o| o.0),
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl PodValue {
    /// A value sampled at each evaluation, over the scenario's window.
    fn at_evaluation(milli: i64) -> Self {
        Self {
            milli,
            timestamp: None,
            window: None,
        }
    }
}

// ---- Locating fields in the text ----

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

fn render_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Parses `spec.metrics[0].resource.target` into segments.
fn parse_path(text: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in text.split('.') {
        let mut rest = part;
        let name_end = rest.find('[').unwrap_or(rest.len());
        if name_end > 0 {
            out.push(key(&rest[..name_end]));
        }
        rest = &rest[name_end..];
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(close) = inner.find(']') else {
                break;
            };
            if let Ok(i) = inner[..close].parse() {
                out.push(Seg::Index(i));
            }
            rest = &inner[close + 1..];
        }
    }
    out
}

/// A position in a text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

/// Where the node at `path` starts in `text`, or where its longest existing ancestor starts.
///
/// serde_yaml_ng exposes positions only on errors, so this walks the document with a visitor that
/// fails on purpose at the node wanted; the error carries that node's position.
fn locate(text: &str, path: &[Seg]) -> Option<Pos> {
    (0..=path.len())
        .rev()
        .find_map(|n| locate_exact(text, &path[..n]))
}

fn locate_exact(text: &str, path: &[Seg]) -> Option<Pos> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Walk { path }).deserialize(de) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| Pos {
            line: l.line(),
            column: l.column(),
        }),
    }
}

struct Walk<'a> {
    path: &'a [Seg],
}

/// Fails on any node: its error carries the node's position.
struct Here;

impl Visitor<'_> for Here {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing (locating a field)")
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            d.deserialize_any(Here)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (first, rest) = match self.path.split_first() {
            Some((Seg::Key(k), rest)) => (k, rest),
            _ => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(());
            }
        };
        while let Some(k) = map.next_key::<String>()? {
            if &k == first {
                map.next_value_seed(Walk { path: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let found = match self.path.split_first() {
                Some((Seg::Index(want), rest)) if *want == i => {
                    seq.next_element_seed(Walk { path: rest })?
                }
                _ => seq.next_element::<IgnoredAny>()?.map(|_| ()),
            };
            if found.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Collects problems, each located in the scenario text.
struct Problems<'a> {
    text: &'a str,
    list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            list: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The error listing every problem in file order; problems with no known place come last.
    fn into_error(mut self) -> ScenarioError {
        self.list
            .sort_by_key(|pr| (pr.line == 0, pr.line, pr.column));
        ScenarioError {
            problems: self.list,
        }
    }

    fn push(&mut self, path: &[Seg], message: impl Into<String>) {
        let pos = locate(self.text, path);
        self.list.push(Problem {
            line: pos.map_or(0, |p| p.line),
            column: pos.map_or(0, |p| p.column),
            field: render_path(path),
            message: message.into(),
        });
    }

    /// A manifest's problems, placed at their line in the scenario file when the manifest is a block
    /// string, and always with the manifest's own line and column.
    fn manifest(&mut self, path: &[Seg], manifest: &str, error: ManifestError) {
        let scalar = locate(self.text, path);
        let origin = scalar.and_then(|p| block_origin(self.text, p));
        let mut place = |line: usize, column: usize, message: String| {
            let (abs_line, abs_column) = match (origin, line) {
                (Some((l, c)), 1..) => (l + line - 1, c + column.max(1) - 1),
                _ => scalar.map_or((0, 0), |p| (p.line, p.column)),
            };
            let at = if line > 0 {
                format!("manifest line {line}, column {column}: ")
            } else {
                String::new()
            };
            self.list.push(Problem {
                line: abs_line,
                column: abs_column,
                field: render_path(path),
                message: format!("{at}{message}"),
            });
        };
        match error {
            ManifestError::Yaml {
                line,
                column,
                message,
            } => place(line, column, message),
            ManifestError::Invalid(messages) => {
                for m in messages {
                    let field = m.split(": ").next().unwrap_or("");
                    let pos = locate(manifest, &parse_path(field));
                    let (line, column) = pos.map_or((0, 0), |p| (p.line, p.column));
                    place(line, column, m);
                }
            }
        }
    }
}

/// For a block scalar (`|` or `>`) starting at `pos`: the scenario line and column of its content's first
/// line and column.
fn block_origin(text: &str, pos: Pos) -> Option<(usize, usize)> {
    // The parser's columns count characters (its byte index does not count bytes either), so find the
    // indicator by line and column.
    let mut lines = text.lines().skip(pos.line.checked_sub(1)?);
    let indicator = lines.next()?.chars().nth(pos.column.checked_sub(1)?)?;
    if !matches!(indicator, '|' | '>') {
        return None;
    }
    // Manifest line 1 is the line after the indicator (blank leading lines belong to the content); its
    // column 1 is the content's indentation, which the first non-blank line sets.
    let indent = lines
        .find(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())?;
    Some((pos.line + 1, indent + 1))
}

fn serde_problem(e: &serde_yaml_ng::Error) -> Problem {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let text = e.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
    // serde_yaml_ng prefixes the path (`timeline[0].at: ...`) unless the error is at the top.
    let (field, message) = match text.split_once(": ") {
        Some((p, m))
            if !p.is_empty()
                && p.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_' | '-' | '*')
                }) =>
        {
            (p.to_owned(), m.to_owned())
        }
        _ => (String::new(), text),
    };
    Problem {
        line,
        column,
        field,
        message,
    }
}

// ---- Parsing and validation ----

/// How the policy reads each metric key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricShape {
    /// Resource, ContainerResource, Pods.
    PerPod,
    /// Object.
    Object,
    /// External.
    External,
    /// A KEDA trigger.
    Trigger,
}

impl MetricShape {
    /// What a metric of this shape takes, when `value` is not of a form it takes.
    fn mismatch(self, value: &MetricValue) -> Option<&'static str> {
        let fits = matches!(
            (self, value),
            (_, MetricValue::Scalar(_) | MetricValue::Error(_))
                | (MetricShape::Trigger, MetricValue::BuildError(_))
                | (
                    MetricShape::PerPod,
                    MetricValue::PerPod { .. } | MetricValue::Total(_)
                )
                | (MetricShape::External, MetricValue::Series(_))
        );
        if fits {
            return None;
        }
        Some(match self {
            MetricShape::PerPod => {
                "a per-pod metric takes a quantity, a map of pod name to quantity, {total: <quantity>} or error"
            }
            MetricShape::External => {
                "an External metric takes a quantity, a list of quantities or error"
            }
            MetricShape::Object | MetricShape::Trigger => "this metric takes one quantity or error",
        })
    }
}

/// The scenario key of each HPA metric, in spec order.
fn hpa_metric_keys(spec: &HpaSpec) -> Vec<(String, MetricShape)> {
    spec.metrics
        .iter()
        .map(|m| match &m.source {
            MetricSource::Resource { name } | MetricSource::ContainerResource { name, .. } => {
                (name.clone(), MetricShape::PerPod)
            }
            MetricSource::Pods { metric } => (metric.clone(), MetricShape::PerPod),
            MetricSource::Object { metric, .. } => (metric.clone(), MetricShape::Object),
            MetricSource::External { metric } => (metric.clone(), MetricShape::External),
        })
        .collect()
}

impl Policy {
    /// The kube-controller-manager settings the policy is evaluated with.
    fn controller_mut(&mut self) -> &mut hpa::ControllerConfig {
        match self {
            Policy::Hpa(spec) => &mut spec.controller,
            Policy::ScaledObject(spec) => &mut spec.controller,
        }
    }

    /// The scenario keys the policy reads, with their shapes (KEDA triggers answer to their index too).
    fn keys(&self) -> Vec<(String, MetricShape)> {
        match self {
            Policy::Hpa(spec) => hpa_metric_keys(spec),
            Policy::ScaledObject(so) => keda_trigger_keys(so),
        }
    }
}

/// Where the manifest says the target is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetDoc {
    metadata: Option<TargetMeta>,
    spec: Option<TargetSpec>,
}

#[derive(Deserialize)]
struct TargetMeta {
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetSpec {
    scale_target_ref: Option<TargetRef>,
}

#[derive(Deserialize)]
struct TargetRef {
    name: Option<String>,
}

/// The target's namespace and name, from `metadata.namespace` and `spec.scaleTargetRef.name`.
fn target_of(manifest: &str) -> (String, Option<String>) {
    let doc: Option<TargetDoc> = serde_yaml_ng::from_str(manifest).ok();
    let namespace = doc
        .as_ref()
        .and_then(|d| d.metadata.as_ref())
        .and_then(|m| m.namespace.clone())
        .unwrap_or_else(|| "default".to_owned());
    let name = doc
        .and_then(|d| d.spec)
        .and_then(|s| s.scale_target_ref)
        .and_then(|r| r.name);
    (namespace, name)
}

fn containers_of(
    requests: Option<&BTreeMap<String, Quantity>>,
    containers: Option<&Vec<ContainerConfig>>,
) -> Option<Vec<ContainerRequests>> {
    let reqs = |m: &BTreeMap<String, Quantity>| m.iter().map(|(k, q)| (k.clone(), q.0)).collect();
    match (containers, requests) {
        (Some(cs), _) => Some(
            cs.iter()
                .map(|c| ContainerRequests {
                    name: c.name.clone(),
                    requests: reqs(&c.requests),
                })
                .collect(),
        ),
        (None, Some(r)) => Some(vec![ContainerRequests {
            name: "main".to_owned(),
            requests: reqs(r),
        }]),
        (None, None) => None,
    }
}

fn requests_of(m: &BTreeMap<String, Quantity>) -> BTreeMap<String, i64> {
    m.iter().map(|(k, q)| (k.clone(), q.0)).collect()
}

fn init_containers_of(cs: &[InitContainerConfig]) -> Vec<InitContainerRequests> {
    cs.iter()
        .map(|c| InitContainerRequests {
            name: c.name.clone(),
            requests: requests_of(&c.requests),
            restartable: c.restart_policy == Some(RestartPolicy::Always),
        })
        .collect()
}

/// Builds a pod from its configuration. `created` is the absolute time a pod without `started` started;
/// `origin` is the absolute time of scenario time 0. What the configuration does not say about requests
/// comes from `defaults` (the workload's pod template).
fn build_pod(
    name: &str,
    cfg: &PodConfig,
    origin: i64,
    created: i64,
    defaults: &NewPods,
) -> PodInfo {
    let start_ms = match cfg.started {
        Some(StartTime::At(o)) => Some(origin.saturating_add(o)),
        Some(StartTime::Unset) => None,
        None => Some(created),
    };
    let phase = cfg.phase.unwrap_or(PodPhase::Running);
    let ready = match cfg.ready {
        Some(r) => r.0,
        None if phase == PodPhase::Running => Some(ConditionStatus::True),
        None => Some(ConditionStatus::False),
    };
    PodInfo {
        name: name.to_owned(),
        phase,
        ready,
        ready_transition_ms: cfg
            .ready_since
            .map(|o| origin.saturating_add(o.0))
            .or(start_ms)
            .unwrap_or(created),
        start_ms,
        deleting: cfg.deleting.unwrap_or(false),
        containers: containers_of(cfg.requests.as_ref(), cfg.containers.as_ref())
            .unwrap_or_else(|| defaults.containers.clone()),
        init_containers: cfg
            .init_containers
            .as_deref()
            .map_or_else(|| defaults.init_containers.clone(), init_containers_of),
        pod_requests: match &cfg.resources {
            Some(r) => Some(requests_of(&r.requests)),
            None => defaults.pod_requests.clone(),
        },
        overhead: cfg
            .overhead
            .as_ref()
            .map_or_else(|| defaults.overhead.clone(), requests_of),
    }
}

/// Applies a timeline change to an existing pod at absolute time `at`.
fn patch_pod(pod: &mut PodInfo, cfg: &PodConfig, origin: i64, at: i64) {
    if let Some(phase) = cfg.phase {
        if phase == PodPhase::Running && pod.start_ms.is_none() {
            pod.start_ms = Some(at);
        }
        pod.phase = phase;
    }
    if let Some(r) = cfg.ready {
        if pod.ready != r.0 {
            pod.ready_transition_ms = at;
        }
        pod.ready = r.0;
    }
    if let Some(o) = cfg.ready_since {
        pod.ready_transition_ms = origin.saturating_add(o.0);
    }
    match cfg.started {
        Some(StartTime::At(o)) => pod.start_ms = Some(origin.saturating_add(o)),
        Some(StartTime::Unset) => pod.start_ms = None,
        None => {}
    }
    if let Some(d) = cfg.deleting {
        pod.deleting = d;
    }
    if let Some(c) = containers_of(cfg.requests.as_ref(), cfg.containers.as_ref()) {
        pod.containers = c;
    }
    if let Some(c) = &cfg.init_containers {
        pod.init_containers = init_containers_of(c);
    }
    if let Some(r) = &cfg.resources {
        pod.pod_requests = Some(requests_of(&r.requests));
    }
    if let Some(o) = &cfg.overhead {
        pod.overhead = requests_of(o);
    }
}

/// Parses and validates a scenario. Errors list every problem found, each with its line, column and field;
/// a file that is not YAML of the scenario's shape yields the parser's first error.
///
/// Each stage reads one part of the file and records its problems instead of stopping, so one run
/// reports everything wrong; a part that cannot be read hands the later stages a stand-in (no policy,
/// `0` replicas) so that their own checks still run.
pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    let file = read_document(text)?;
    let mut problems = Problems::new(text);
    let cluster = read_cluster(&file.policy, &mut problems);
    let target = read_policy(&file, cluster.as_ref(), &mut problems);
    let schedules = read_schedules(&file.schedules, &mut problems);
    let clock = read_clock(&file, &mut problems);
    let new_pods = read_new_pods(&file.new_pods, &file.initial, &mut problems);
    let initial = read_initial(&file.initial, &target, &clock, &new_pods, &mut problems);
    let keys = target.policy.as_ref().map(Policy::keys);
    let timeline = read_timeline(
        &file.timeline,
        keys.as_deref(),
        &clock,
        cluster.as_ref(),
        &mut problems,
    );
    let history = read_history(file.history.as_ref(), &clock, &mut problems);
    if matches!(target.policy, Some(Policy::ScaledObject(_))) {
        refuse_scale_for_keda(&file, &mut problems);
    }
    let sample_window_ms = file.sample_window.map_or(SAMPLE_WINDOW_MS, |o| o.0);
    if sample_window_ms <= 0 {
        problems.push(&[key("sample_window")], "must be greater than 0");
    }
    match target.policy {
        Some(policy) if problems.is_empty() => Ok(Scenario {
            policy,
            workload: target.workload,
            pod_prefix: target.pod_prefix,
            schedules,
            sync_period_ms: clock.sync_period_ms,
            evaluate_on_change: file.evaluate_on_change,
            start_ms: clock.start_ms,
            initial_replicas: initial.replicas,
            initial_pods: initial.pods,
            new_pods,
            timeline,
            end_ms: clock.end_ms,
            keda_status: read_keda_status(&file.policy, &mut problems),
            labelled_pods: file.initial.labelled_pods.clone(),
            scale: file.initial.scale.clone(),
            history,
            sample_window_ms,
        }),
        _ => Err(problems.into_error()),
    }
}

/// The `/scale` inputs are the HPA's: a KEDA replay does not read them, so giving them is a mistake.
fn refuse_scale_for_keda(file: &ScenarioFile, p: &mut Problems<'_>) {
    const WHY: &str = "only an HPA policy's replay reads the /scale subresource";
    if file.initial.scale.is_some() {
        p.push(&[key("initial"), key("scale")], WHY);
    }
    for (i, entry) in file.timeline.iter().enumerate() {
        for (field, given) in [
            ("scale", entry.scale.is_some()),
            ("fail_scale_get", entry.fail_scale_get.is_some()),
            ("fail_scale_update", entry.fail_scale_update.is_some()),
        ] {
            if given {
                p.push(&[key("timeline"), Seg::Index(i), key(field)], WHY);
            }
        }
    }
}

/// The seeded controller memory, at absolute times. Every entry must be in the past (`0s` or earlier);
/// replica counts must not be negative and changes must be positive, as the controller records them.
/// Seeded recommendations replace the one a fresh controller records first (upstream records it only
/// when it has none).
fn read_history(
    history: Option<&HistoryConfig>,
    clock: &ReplayClock,
    p: &mut Problems<'_>,
) -> HpaState {
    let mut state = HpaState::default();
    let Some(h) = history else {
        return state;
    };
    let origin = clock.start_ms;
    let mut check_at = |path: &[Seg], at: Offset| {
        if at.0 > 0 {
            let message = format!("{} is after 0s: history is the past", format_offset(at.0));
            p.push(&[path, &[key("at")]].concat(), message);
        }
    };
    for (i, r) in h.recommendations.iter().enumerate() {
        let path = [key("history"), key("recommendations"), Seg::Index(i)];
        check_at(&path, r.at);
        state.recommendations.push(TimestampedRecommendation {
            replicas: r.replicas,
            at_ms: origin.saturating_add(r.at.0),
        });
    }
    let mut events = |list: &[SeededEvent], name: &str| -> Vec<ScaleEvent> {
        list.iter()
            .enumerate()
            .map(|(i, e)| {
                let path = [key("history"), key(name), Seg::Index(i)];
                check_at(&path, e.at);
                ScaleEvent {
                    change: e.change,
                    at_ms: origin.saturating_add(e.at.0),
                    outdated: false,
                }
            })
            .collect()
    };
    state.scale_up_events = events(&h.scale_up_events, "scale_up_events");
    state.scale_down_events = events(&h.scale_down_events, "scale_down_events");
    for (i, r) in h.recommendations.iter().enumerate() {
        if r.replicas < 0 {
            let path = [
                key("history"),
                key("recommendations"),
                Seg::Index(i),
                key("replicas"),
            ];
            p.push(&path, format!("{} must not be negative", r.replicas));
        }
    }
    for (name, list) in [
        ("scale_up_events", &h.scale_up_events),
        ("scale_down_events", &h.scale_down_events),
    ] {
        for (i, e) in list.iter().enumerate() {
            if e.change <= 0 {
                let path = [key("history"), key(name), Seg::Index(i), key("change")];
                p.push(&path, format!("{} must be greater than 0", e.change));
            }
        }
    }
    state.initialized = !state.recommendations.is_empty();
    state
}

/// The policy, and the workload it scales.
struct PolicyTarget {
    /// `None` when the policy is missing, doubled or invalid (the problem is recorded).
    policy: Option<Policy>,
    /// `<namespace>/<pod_prefix>`.
    workload: String,
    /// `scaleTargetRef.name`, or `pod` when the manifest names no target.
    pod_prefix: String,
}

/// The replay's clock: when evaluations happen, in scenario ms, and the wall-clock time of `0s`.
struct ReplayClock {
    sync_period_ms: i64,
    start_ms: i64,
    end_ms: i64,
}

/// The target at `0s`.
struct InitialState {
    replicas: i32,
    pods: Vec<PodInfo>,
}

/// The file as typed YAML. A file not of the scenario's shape has no parts to check one by one, so the
/// YAML parser's first error is the only problem reported.
fn read_document(text: &str) -> Result<ScenarioFile, ScenarioError> {
    serde_yaml_ng::from_str(text).map_err(|e| ScenarioError {
        problems: vec![serde_problem(&e)],
    })
}

/// The policy's manifest, with the file's controller flags applied, and its target. The target's name is
/// read even from a manifest that fails validation, so that pod names and the later checks still run.
fn read_policy(
    file: &ScenarioFile,
    cluster: Option<&ClusterView>,
    p: &mut Problems<'_>,
) -> PolicyTarget {
    let Some((path, manifest, parsed)) = policy_manifest(&file.policy, cluster, p) else {
        return PolicyTarget {
            policy: None,
            workload: "/pod".to_owned(),
            pod_prefix: "pod".to_owned(),
        };
    };
    let (namespace, name) = target_of(manifest);
    let policy = match parsed {
        Ok(mut policy) => {
            if let Some(flags) = &file.controller {
                apply_flags(policy.controller_mut(), flags);
            }
            Some(policy)
        }
        Err(e) => {
            p.manifest(&path, manifest, e);
            None
        }
    };
    let pod_prefix = name.unwrap_or_else(|| {
        if policy.is_some() {
            let message = "spec.scaleTargetRef.name: missing (the simulated target's name)";
            p.push(&path, message);
        }
        "pod".to_owned()
    });
    if let Some(policy) = &policy {
        check_simulator_limit(policy, &path, p);
    }
    PolicyTarget {
        workload: format!("{namespace}/{pod_prefix}"),
        pod_prefix,
        policy,
    }
}

/// The one manifest the policy gives: where it sits in the file, its text, and what it parses to.
/// `None` when there is not exactly one (the problem is recorded).
fn policy_manifest<'f>(
    policy: &'f PolicyConfig,
    cluster: Option<&ClusterView>,
    p: &mut Problems<'_>,
) -> Option<(Vec<Seg>, &'f str, Result<Policy, ManifestError>)> {
    match (&policy.hpa, &policy.scaled_object) {
        (Some(m), None) => {
            let parsed = manifest::parse_hpa(m).map(Policy::Hpa);
            Some((vec![key("policy"), key("hpa")], m, parsed))
        }
        (None, Some(m)) => {
            let path = vec![key("policy"), key(scaled_object_key(p.text))];
            Some((
                path,
                m,
                manifest::parse_scaled_object_in(m, cluster).map(Policy::ScaledObject),
            ))
        }
        (Some(_), Some(_)) => {
            let message = "give exactly one of hpa or scaledObject, not both";
            p.push(&[key("policy")], message);
            None
        }
        (None, None) => {
            p.push(
                &[key("policy")],
                "give exactly one of hpa (an autoscaling/v2 HorizontalPodAutoscaler manifest) or scaledObject (a KEDA ScaledObject manifest)",
            );
            None
        }
    }
}

/// The simulator holds one pod per replica, so the policy's maximum must fit in
/// [`MAX_SIMULATED_REPLICAS`].
fn check_simulator_limit(policy: &Policy, path: &[Seg], p: &mut Problems<'_>) {
    let (field, max) = match policy {
        Policy::Hpa(spec) => ("spec.maxReplicas", spec.max_replicas),
        Policy::ScaledObject(spec) => ("spec.maxReplicaCount", spec.max_replica_count),
    };
    if max > MAX_SIMULATED_REPLICAS {
        p.push(
            path,
            format!(
                "{field}: {max} is more than the simulator holds ({MAX_SIMULATED_REPLICAS} pods)"
            ),
        );
    }
}

/// The scheduled minimums; each problem is placed on the field it is about.
fn read_schedules(configs: &[ScheduleConfig], p: &mut Problems<'_>) -> Vec<Schedule> {
    let mut schedules = Vec::new();
    for (i, s) in configs.iter().enumerate() {
        let time_zone = s.time_zone.as_deref().unwrap_or("UTC");
        match Schedule::parse(&s.start, &s.duration, s.min_replicas, time_zone) {
            Ok(s) => schedules.push(s),
            Err(e) => {
                let field = match e {
                    ScheduleError::Cron { .. } => "start",
                    ScheduleError::Duration(_) => "duration",
                    ScheduleError::TimeZone(_) => "time_zone",
                    ScheduleError::MinReplicas(_) => "min_replicas",
                };
                p.push(
                    &[key("schedules"), Seg::Index(i), key(field)],
                    e.to_string(),
                );
            }
        }
    }
    schedules
}

/// The sync period, the end and the start, with their defaults. The number of evaluations is bounded
/// ([`MAX_EVALUATIONS`]) so that a replay's work is.
fn read_clock(file: &ScenarioFile, p: &mut Problems<'_>) -> ReplayClock {
    let sync_period_ms = file.sync_period.map_or(15_000, |o| o.0);
    if sync_period_ms <= 0 {
        p.push(&[key("sync_period")], "must be greater than 0");
    }
    let end_ms = file.end.0;
    if end_ms < 0 {
        p.push(&[key("end")], "must not be negative");
    }
    if sync_period_ms > 0 && end_ms / sync_period_ms >= MAX_EVALUATIONS {
        let evaluations = end_ms / sync_period_ms;
        p.push(
            &[key("end")],
            format!("end / sync_period is {evaluations} evaluations, more than {MAX_EVALUATIONS}"),
        );
    }
    ReplayClock {
        sync_period_ms,
        start_ms: file.start.map_or(0, |t| t.0),
        end_ms,
    }
}

/// How pods a scale-up creates behave. Their containers default to the initial pods' (the template's,
/// else the first listed pod's), as a scale-up copies the workload's pod template.
fn read_new_pods(np: &NewPodsConfig, init: &InitialConfig, p: &mut Problems<'_>) -> NewPods {
    let ready_after_ms = np.ready_after.map_or(0, |o| o.0);
    let running_after_ms = np.running_after.map_or(ready_after_ms, |o| o.0);
    if ready_after_ms < 0 {
        let path = [key("new_pods"), key("ready_after")];
        p.push(&path, "must not be negative");
    }
    if running_after_ms < 0 || running_after_ms > ready_after_ms {
        let path = [key("new_pods"), key("running_after")];
        p.push(&path, "must be between 0 and ready_after");
    }
    if np.requests.is_some() && np.containers.is_some() {
        let path = [key("new_pods"), key("containers")];
        p.push(&path, "give requests or containers, not both");
    }
    let pod_containers =
        |pod: &PodConfig| containers_of(pod.requests.as_ref(), pod.containers.as_ref());
    let template = init
        .pod_template
        .as_ref()
        .or_else(|| init.pods.as_ref().and_then(|pods| pods.first()));
    let containers = containers_of(np.requests.as_ref(), np.containers.as_ref())
        .or_else(|| template.and_then(pod_containers))
        .unwrap_or_default();
    let init_containers = np
        .init_containers
        .as_ref()
        .or_else(|| template.and_then(|t| t.init_containers.as_ref()))
        .map(|c| init_containers_of(c))
        .unwrap_or_default();
    let pod_requests = np
        .resources
        .as_ref()
        .or_else(|| template.and_then(|t| t.resources.as_ref()))
        .map(|r| requests_of(&r.requests));
    let overhead = np
        .overhead
        .as_ref()
        .or_else(|| template.and_then(|t| t.overhead.as_ref()))
        .map(requests_of)
        .unwrap_or_default();
    NewPods {
        running_after_ms,
        ready_after_ms,
        containers,
        init_containers,
        pod_requests,
        overhead,
    }
}

/// The replica count and pods at `0s`: the listed pods, or `replicas` pods from the template. Pods that
/// do not say when they started started an hour before `0s` ([`DEFAULT_INITIAL_START_MS`]).
fn read_initial(
    init: &InitialConfig,
    target: &PolicyTarget,
    clock: &ReplayClock,
    new_pods: &NewPods,
    p: &mut Problems<'_>,
) -> InitialState {
    let replicas = initial_replicas(init, p);
    if init.pods.is_some() && init.pod_template.is_some() {
        let path = [key("initial"), key("pod_template")];
        p.push(&path, "give pods or pod_template, not both");
    }
    let origin = clock.start_ms;
    let started = origin.saturating_add(DEFAULT_INITIAL_START_MS);
    let mut pods = Vec::new();
    if let Some(listed) = &init.pods {
        let mut names = BTreeSet::new();
        for (i, pod) in listed.iter().enumerate() {
            let path = [key("initial"), key("pods"), Seg::Index(i)];
            check_pod(p, &path, pod);
            let Some(name) = &pod.name else {
                p.push(&path, "name: missing");
                continue;
            };
            if !names.insert(name.clone()) {
                let message = format!("pod {name:?} is listed twice");
                p.push(&[&path[..], &[key("name")]].concat(), message);
            }
            pods.push(build_pod(name, pod, origin, started, new_pods));
        }
    } else {
        if let Some(t) = &init.pod_template {
            let path = [key("initial"), key("pod_template")];
            check_pod(p, &path, t);
            if t.name.is_some() {
                let message = "a template's pods are named <target>-<index>: remove name";
                p.push(&[&path[..], &[key("name")]].concat(), message);
            }
        }
        let template = init.pod_template.clone().unwrap_or_default();
        for i in 0..replicas.clamp(0, MAX_SIMULATED_REPLICAS) {
            let name = format!("{}-{i}", target.pod_prefix);
            pods.push(build_pod(&name, &template, origin, started, new_pods));
        }
    }
    InitialState { replicas, pods }
}

/// `initial.replicas`, defaulting to the number of listed pods.
fn initial_replicas(init: &InitialConfig, p: &mut Problems<'_>) -> i32 {
    let path = [key("initial"), key("replicas")];
    let replicas = match (init.replicas, &init.pods) {
        (Some(r), _) => r,
        (None, Some(pods)) => i32::try_from(pods.len()).unwrap_or(i32::MAX),
        (None, None) => {
            p.push(&path, "missing (or list the pods)");
            0
        }
    };
    if !(0..=MAX_SIMULATED_REPLICAS).contains(&replicas) {
        let message = format!("{replicas} must be between 0 and {MAX_SIMULATED_REPLICAS}");
        p.push(&path, message);
    }
    replicas
}

/// The timeline's entries, each checked against the replay's span, the entry before it, and the
/// policy's metrics (`keys` is `None` when there is no valid policy to check them against).
fn read_timeline(
    entries: &[TimelineEntry],
    keys: Option<&[(String, MetricShape)]>,
    clock: &ReplayClock,
    cluster: Option<&ClusterView>,
    p: &mut Problems<'_>,
) -> Vec<Change> {
    let mut timeline = Vec::new();
    let mut last_at = i64::MIN;
    for (i, entry) in entries.iter().enumerate() {
        let path = [key("timeline"), Seg::Index(i)];
        timeline.push(read_change(&path, entry, last_at, keys, clock, cluster, p));
        last_at = last_at.max(entry.at.0);
    }
    timeline
}

/// One timeline entry. It must fall in `0s..end` and not before `last_at`, since the replay applies
/// entries in file order.
fn read_change(
    path: &[Seg],
    entry: &TimelineEntry,
    last_at: i64,
    keys: Option<&[(String, MetricShape)]>,
    clock: &ReplayClock,
    cluster: Option<&ClusterView>,
    p: &mut Problems<'_>,
) -> Change {
    let at = entry.at.0;
    let at_path = [path, &[key("at")]].concat();
    if at < 0 || at > clock.end_ms {
        p.push(
            &at_path,
            format!("{} is outside 0s..end", format_offset(at)),
        );
    }
    if at < last_at {
        let (at, last_at) = (format_offset(at), format_offset(last_at));
        let message = format!(
            "{at} comes before the previous entry's {last_at}: keep the timeline in time order"
        );
        p.push(&at_path, message);
    }
    if let Some(keys) = keys {
        check_metric_values(path, &entry.metrics, keys, p);
    }
    for (j, pod) in entry.pods.iter().enumerate() {
        let pod_path = [path, &[key("pods"), Seg::Index(j)]].concat();
        check_pod(p, &pod_path, pod);
        if pod.name.is_none() {
            p.push(&pod_path, "name: missing");
        }
    }
    if let Some(r) = entry.replicas
        && !(0..=MAX_SIMULATED_REPLICAS).contains(&r)
    {
        let message = format!("{r} must be between 0 and {MAX_SIMULATED_REPLICAS}");
        p.push(&[path, &[key("replicas")]].concat(), message);
    }
    let scaled_object = entry.scaled_object.as_ref().and_then(|text| {
        let so_path = [path, &[key(scaled_object_change_key(p.text, path))]].concat();
        match manifest::parse_scaled_object_in(text, cluster) {
            Ok(so) => Some(Box::new(so)),
            Err(e) => {
                p.manifest(&so_path, text, e);
                None
            }
        }
    });
    Change {
        at_ms: at,
        metrics: entry.metrics.clone(),
        pods: entry.pods.clone(),
        deletes: entry.deletes.clone(),
        replicas: entry.replicas,
        scaled_object,
        labelled_pods: entry.labelled_pods.clone(),
        scale: entry.scale.clone(),
        fail_scale_get: entry.fail_scale_get.clone(),
        fail_scale_update: entry.fail_scale_update.clone(),
    }
}

/// Each value must be for a metric the policy reads, in a form that metric takes: a value the replay
/// could not use would otherwise show up only as a failing metric in the steps.
fn check_metric_values(
    path: &[Seg],
    metrics: &BTreeMap<String, MetricValue>,
    keys: &[(String, MetricShape)],
    p: &mut Problems<'_>,
) {
    for (k, value) in metrics {
        let metric_path = [path, &[key("metrics"), key(k)]].concat();
        let mut shapes = keys.iter().filter(|(name, _)| name == k).peekable();
        if shapes.peek().is_none() {
            let mut known: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
            known.dedup();
            let known = known.join(", ");
            let message = format!("the policy has no metric {k:?} (its metrics: {known})");
            p.push(&metric_path, message);
        }
        for (_, shape) in shapes {
            if let Some(takes) = shape.mismatch(value) {
                p.push(&metric_path, takes);
            }
        }
    }
}

/// How the file spells `policy.scaledObject` (`scaled_object` is accepted too), for locating it.
fn scaled_object_key(text: &str) -> &'static str {
    if locate_exact(text, &[key("policy"), key("scaled_object")]).is_some() {
        "scaled_object"
    } else {
        "scaledObject"
    }
}

/// A pod's containers come from `requests` (one container, `main`) or from `containers`: given both, one
/// would be silently ignored.
fn check_pod(p: &mut Problems<'_>, path: &[Seg], pod: &PodConfig) {
    if pod.requests.is_some() && pod.containers.is_some() {
        p.push(
            &[path, &[key("containers")]].concat(),
            "give requests or containers, not both",
        );
    }
}

/// The file's `controller` flags replace the defaults the manifest was parsed with, as
/// kube-controller-manager's command-line flags do.
fn apply_flags(c: &mut hpa::ControllerConfig, flags: &ControllerFlags) {
    if let Some(t) = flags.tolerance {
        c.tolerance = t;
    }
    if let Some(o) = flags.cpu_initialization_period {
        c.cpu_initialization_period_ms = o.0;
    }
    if let Some(o) = flags.initial_readiness_delay {
        c.delay_of_initial_readiness_status_ms = o.0;
    }
    if let Some(o) = flags.downscale_stabilization {
        c.downscale_stabilization_window_ms = o.0;
    }
}

/// `90s` → `1m30s`, for messages and tables.
pub fn format_offset(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let mut rest = ms.unsigned_abs();
    let mut s = String::from(sign);
    for (unit, size) in [("h", 3_600_000u64), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            s.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    s
}

// ---- Simulation ----

/// A simulated pod: its state, and for pods the simulator created, when they become Running and Ready.
#[derive(Debug, Clone)]
struct SimPod {
    info: PodInfo,
    /// Creation time (absolute ms); orders scale-down victims.
    created_ms: i64,
    /// `(running_ms, ready_ms)`: absolute times of an automatic lifecycle, until a timeline change
    /// overrides it.
    lifecycle: Option<(i64, i64)>,
}

impl SimPod {
    fn at(&self, now: i64) -> PodInfo {
        let mut p = self.info.clone();
        if let Some((running, ready)) = self.lifecycle {
            if now < running {
                p.phase = PodPhase::Pending;
                p.ready = Some(ConditionStatus::False);
                p.ready_transition_ms = self.created_ms;
                p.start_ms = None;
            } else if now < ready {
                p.phase = PodPhase::Running;
                p.ready = Some(ConditionStatus::False);
                p.ready_transition_ms = running;
                p.start_ms = Some(running);
            } else {
                p.phase = PodPhase::Running;
                p.ready = Some(ConditionStatus::True);
                p.ready_transition_ms = ready;
                p.start_ms = Some(running);
            }
        }
        p
    }
}

fn is_active(p: &PodInfo) -> bool {
    !p.deleting && !matches!(p.phase, PodPhase::Failed | PodPhase::Succeeded)
}

/// The world the replay evolves.
struct World<'a> {
    scenario: &'a Scenario,
    replicas: i32,
    pods: Vec<SimPod>,
    metrics: BTreeMap<String, MetricValue>,
    next_index: u64,
    /// The ScaledObject as last edited by the timeline (`None`: the policy's).
    scaled_object: Option<ScaledObjectSpec>,
    /// The labelled pods for `kubernetes-workload` triggers.
    labelled_pods: Vec<LabelledPodsConfig>,
    /// HPA: the `/scale` selector and other HPAs as last set.
    scale: Option<ScaleConfig>,
    /// HPA: failures of the next evaluation's `/scale` read and update.
    fail_scale_get: Option<String>,
    fail_scale_update: Option<String>,
}

impl World<'_> {
    fn pods_at(&self, now: i64) -> Vec<PodInfo> {
        self.pods.iter().map(|p| p.at(now)).collect()
    }

    /// What this evaluation's `/scale` read and update return; the injected failures are used up.
    fn scale_access(&mut self, pods: &[PodInfo]) -> ScaleAccess {
        let mut access = ScaleAccess {
            get_error: self.fail_scale_get.take(),
            update_error: self.fail_scale_update.take(),
            ..ScaleAccess::default()
        };
        if let Some(scale) = &self.scale {
            access.selector = Some(scale.selector.clone());
            access.hpa_key.clone_from(&self.scenario.workload);
            access.other_hpas.clone_from(&scale.other_hpas);
            access.pod_labels = pods
                .iter()
                .map(|p| (p.name.clone(), scale.pod_labels.clone()))
                .collect();
        }
        access
    }

    fn apply(&mut self, change: &Change) {
        let origin = self.scenario.start_ms;
        let at = origin.saturating_add(change.at_ms);
        for (k, v) in &change.metrics {
            self.metrics.insert(k.clone(), v.clone());
        }
        if let Some(so) = &change.scaled_object {
            self.scaled_object = Some((**so).clone());
        }
        if let Some(l) = &change.labelled_pods {
            self.labelled_pods = l.clone();
        }
        if let Some(scale) = &change.scale {
            self.scale = Some(scale.clone());
        }
        if let Some(e) = &change.fail_scale_get {
            self.fail_scale_get = Some(e.clone());
        }
        if let Some(e) = &change.fail_scale_update {
            self.fail_scale_update = Some(e.clone());
        }
        for cfg in &change.pods {
            let Some(name) = &cfg.name else { continue };
            match self.pods.iter_mut().find(|p| &p.info.name == name) {
                Some(pod) => {
                    pod.info = pod.at(at);
                    pod.lifecycle = None;
                    patch_pod(&mut pod.info, cfg, origin, at);
                }
                None => self.pods.push(SimPod {
                    info: build_pod(name, cfg, origin, at, &self.scenario.new_pods),
                    created_ms: at,
                    lifecycle: None,
                }),
            }
        }
        self.pods
            .retain(|p| !change.deletes.iter().any(|d| d == &p.info.name));
        if let Some(r) = change.replicas {
            self.scale_to(r, at);
        }
    }

    /// Sets the replica count and makes the pods follow, as a ReplicaSet would.
    fn scale_to(&mut self, replicas: i32, now: i64) {
        let replicas = replicas.clamp(0, MAX_SIMULATED_REPLICAS);
        let delta = i64::from(replicas) - i64::from(self.replicas);
        self.replicas = replicas;
        if delta > 0 {
            let np = &self.scenario.new_pods;
            for _ in 0..delta {
                let name = self.fresh_name();
                self.pods.push(SimPod {
                    info: PodInfo {
                        name,
                        phase: PodPhase::Pending,
                        ready: Some(ConditionStatus::False),
                        ready_transition_ms: now,
                        start_ms: None,
                        deleting: false,
                        containers: np.containers.clone(),
                        init_containers: np.init_containers.clone(),
                        pod_requests: np.pod_requests.clone(),
                        overhead: np.overhead.clone(),
                    },
                    created_ms: now,
                    lifecycle: Some((
                        now.saturating_add(np.running_after_ms),
                        now.saturating_add(np.ready_after_ms),
                    )),
                });
            }
        } else if delta < 0 {
            // The ReplicaSet controller's ranking: Pending before running, unready before ready,
            // newer before older.
            let mut victims: Vec<(u8, u8, i64, usize)> = self
                .pods
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let info = p.at(now);
                    is_active(&info).then(|| {
                        (
                            u8::from(info.phase != PodPhase::Pending),
                            u8::from(info.ready == Some(ConditionStatus::True)),
                            -p.created_ms,
                            usize::MAX - i,
                        )
                    })
                })
                .collect();
            victims.sort_unstable();
            let remove: BTreeSet<usize> = victims
                .iter()
                .take(usize::try_from(-delta).unwrap_or(0))
                .map(|v| usize::MAX - v.3)
                .collect();
            let mut i = 0;
            self.pods.retain(|_| {
                let keep = !remove.contains(&i);
                i += 1;
                keep
            });
        }
    }

    fn fresh_name(&mut self) -> String {
        loop {
            let name = format!("{}-{}", self.scenario.pod_prefix, self.next_index);
            self.next_index += 1;
            if !self.pods.iter().any(|p| p.info.name == name) {
                return name;
            }
        }
    }

    /// The sample for a per-pod metric at `now`.
    fn per_pod(&self, key: &str, pods: &[PodInfo], now: i64) -> MetricSample {
        let origin = self.scenario.start_ms;
        let window = self.scenario.sample_window_ms;
        let sample = |milli: i64| PodMetric {
            milli,
            timestamp_ms: now,
            window_ms: window,
        };
        let sample_of = |v: &PodValue| PodMetric {
            milli: v.milli,
            timestamp_ms: v.timestamp.map_or(now, |t| origin.saturating_add(t)),
            window_ms: v.window.unwrap_or(window),
        };
        let running = |p: &&PodInfo| p.phase == PodPhase::Running && !p.deleting;
        match self.metrics.get(key) {
            None => no_value(key),
            // A build error is only taken for KEDA's External triggers (checked at load).
            Some(MetricValue::Error(e) | MetricValue::BuildError(e)) => {
                MetricSample::Failed(e.clone())
            }
            Some(MetricValue::Scalar(v)) => MetricSample::PerPod(
                pods.iter()
                    .filter(running)
                    .map(|p| (p.name.clone(), sample(*v)))
                    .collect(),
            ),
            Some(MetricValue::PerPod { values, default }) => {
                let mut m: BTreeMap<String, PodMetric> = values
                    .iter()
                    .map(|(n, v)| (n.clone(), sample_of(v)))
                    .collect();
                if let Some(d) = default {
                    for p in pods.iter().filter(running) {
                        m.entry(p.name.clone()).or_insert_with(|| sample_of(d));
                    }
                }
                MetricSample::PerPod(m)
            }
            Some(MetricValue::Total(total)) => {
                let ready: Vec<&PodInfo> = pods
                    .iter()
                    .filter(running)
                    .filter(|p| p.ready == Some(ConditionStatus::True))
                    .collect();
                let n = i64::try_from(ready.len()).unwrap_or(i64::MAX).max(1);
                MetricSample::PerPod(
                    ready
                        .iter()
                        .map(|p| (p.name.clone(), sample(total / n)))
                        .collect(),
                )
            }
            Some(MetricValue::Series(_)) => MetricSample::Failed(format!(
                "metric {key:?}: a list of values is only for External metrics"
            )),
        }
    }

    fn single(&self, key: &str, external: bool) -> MetricSample {
        match self.metrics.get(key) {
            None => no_value(key),
            Some(MetricValue::Error(e)) => MetricSample::Failed(e.clone()),
            Some(MetricValue::Scalar(v)) if external => MetricSample::External(vec![*v]),
            Some(MetricValue::Scalar(v)) => MetricSample::Object(*v),
            Some(MetricValue::Series(vs)) if external => MetricSample::External(vs.clone()),
            Some(_) => MetricSample::Failed(format!(
                "metric {key:?}: per-pod values given for a single-valued metric"
            )),
        }
    }

    fn trigger(&self, name: &str, index: usize) -> TriggerValue {
        let value = self
            .metrics
            .get(name)
            .or_else(|| self.metrics.get(&index.to_string()));
        match value {
            None => {
                TriggerValue::Failed(format!("no value for trigger {name:?} in the scenario yet"))
            }
            Some(MetricValue::Error(e)) => TriggerValue::Failed(e.clone()),
            Some(MetricValue::BuildError(e)) => TriggerValue::BuildFailed(e.clone()),
            Some(MetricValue::Scalar(v)) => TriggerValue::Value(*v as f64 / 1000.0),
            Some(_) => TriggerValue::Failed(format!("trigger {name:?} takes one value")),
        }
    }
}

fn no_value(key: &str) -> MetricSample {
    MetricSample::Failed(format!("no value for metric {key:?} in the scenario yet"))
}

/// The evaluation times (scenario ms): the sync period's ticks, plus timeline entries when asked.
fn evaluation_times(s: &Scenario) -> Vec<i64> {
    let mut times = BTreeSet::new();
    let period = s.sync_period_ms.max(1);
    let mut t = 0;
    while t <= s.end_ms {
        times.insert(t);
        t += period;
    }
    if s.evaluate_on_change {
        times.extend(
            s.timeline
                .iter()
                .map(|c| c.at_ms)
                .filter(|t| (0..=s.end_ms).contains(t)),
        );
    }
    times.into_iter().collect()
}

/// Replays a scenario: one [`Step`] per evaluation, in time order.
pub fn simulate(s: &Scenario) -> Vec<Step> {
    let mut world = World {
        scenario: s,
        replicas: s.initial_replicas,
        pods: s
            .initial_pods
            .iter()
            .map(|p| SimPod {
                info: p.clone(),
                created_ms: p.start_ms.unwrap_or(s.start_ms),
                lifecycle: None,
            })
            .collect(),
        metrics: BTreeMap::new(),
        next_index: u64::try_from(s.initial_pods.len()).unwrap_or(0),
        scaled_object: None,
        labelled_pods: s.labelled_pods.clone(),
        scale: s.scale.clone(),
        fail_scale_get: None,
        fail_scale_update: None,
    };
    let mut hpa_state = s.history.clone();
    let mut keda_state = KedaState {
        created_ms: s.keda_status.created_ms,
        last_active_ms: s.keda_status.last_active_ms,
        health: s.keda_status.health.clone(),
        hpa: s.history.clone(),
        ..KedaState::default()
    };
    let mut next_change = 0;
    let mut steps = Vec::new();
    for t in evaluation_times(s) {
        while let Some(c) = s.timeline.get(next_change).filter(|c| c.at_ms <= t) {
            world.apply(c);
            next_change += 1;
        }
        let now = s.start_ms.saturating_add(t);
        let pods = world.pods_at(now);
        let status_replicas =
            i32::try_from(pods.iter().filter(|p| is_active(p)).count()).unwrap_or(i32::MAX);
        let before = world.replicas;
        let (decision, min_replicas, keys) = match &s.policy {
            Policy::Hpa(spec) => {
                let keys = hpa_metric_keys(spec);
                let metrics = keys
                    .iter()
                    .map(|(k, shape)| match shape {
                        MetricShape::PerPod => world.per_pod(k, &pods, now),
                        MetricShape::Object => world.single(k, false),
                        MetricShape::External | MetricShape::Trigger => world.single(k, true),
                    })
                    .collect();
                let access = world.scale_access(&pods);
                let input = HpaInput {
                    current_replicas: before,
                    status_replicas,
                    pods,
                    metrics,
                };
                let min = Schedule::effective_min(&s.schedules, spec.min_replicas, now);
                let d =
                    hpa::evaluate_hpa_with_scale(spec, &mut hpa_state, &input, &access, now, min);
                (d, min, keys.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
            }
            Policy::ScaledObject(initial) => {
                let so = world.scaled_object.as_ref().unwrap_or(initial);
                let mut spec = so.clone();
                spec.min_replica_count =
                    Schedule::effective_min(&s.schedules, so.min_replica_count, now);
                let triggers = world.keda_triggers(so, &pods, now);
                let input = KedaInput {
                    current_replicas: before,
                    status_replicas,
                    pods,
                    triggers,
                };
                let d = keda::evaluate_scaled_object(&spec, &mut keda_state, &input, now);
                let mut keys: Vec<String> = so
                    .hpa_order()
                    .into_iter()
                    .filter_map(|i| so.triggers.get(i).map(|t| t.name.clone()))
                    .collect();
                if so.scaling_modifiers.is_some() {
                    keys.push(keda::COMPOSITE_METRIC_NAME.to_owned());
                }
                (d, spec.min_replica_count, keys)
            }
        };
        let after = decision.desired_replicas;
        if after != before {
            world.scale_to(after, now);
        }
        steps.push(Step {
            time_s: t as f64 / 1000.0,
            workload: s.workload.clone(),
            replicas_before: before,
            replicas: world.replicas,
            desired: decision.recommendation.unwrap_or(decision.desired_replicas),
            min_replicas,
            reason: decision.reason.clone(),
            metrics: readings(&decision, &keys),
            seeded_history: seeded_history_read(s, &decision),
            decision,
        });
    }
    steps
}

/// The entries of `s.history` among those the decision read, in scenario time.
fn seeded_history_read(s: &Scenario, d: &Decision) -> Vec<String> {
    let Some(read) = &d.history else {
        return Vec::new();
    };
    let at = |ms: i64| format_offset(ms.saturating_sub(s.start_ms));
    let seeded = &s.history;
    let mut out = Vec::new();
    for &(replicas, at_ms) in &read.recommendations {
        let is_seeded = seeded
            .recommendations
            .iter()
            .any(|r| r.replicas == replicas && r.at_ms == at_ms);
        if is_seeded {
            out.push(format!("recommendation {replicas} at {}", at(at_ms)));
        }
    }
    for (label, read, seeded) in [
        ("scale-up", &read.scale_up_events, &seeded.scale_up_events),
        (
            "scale-down",
            &read.scale_down_events,
            &seeded.scale_down_events,
        ),
    ] {
        for &(change, at_ms) in read {
            if seeded
                .iter()
                .any(|e| e.change == change && e.at_ms == at_ms)
            {
                out.push(format!("{label} {change} at {}", at(at_ms)));
            }
        }
    }
    out
}

fn readings(d: &Decision, keys: &[String]) -> Vec<MetricReading> {
    d.metrics
        .iter()
        .zip(keys)
        .map(|(m, k)| MetricReading {
            metric: k.clone(),
            current: match (m.current_utilization, m.current_milli) {
                (Some(u), _) => Some(format!("{u}%")),
                (None, Some(v)) => Some(decimal(v)),
                (None, None) => None,
            },
            target: match m.target {
                MetricTarget::Utilization(u) => format!("{u}%"),
                MetricTarget::AverageValue(v) => format!("{} per pod", decimal(v)),
                MetricTarget::Value(v) => decimal(v),
            },
            proposal: m.proposal,
            error: m.error.clone(),
            pods: m.pods.map(|c| pod_summary(c, m.pod_groups.as_ref())),
        })
        .collect()
}

/// `ready 3, unready 1 (web-3), missing 0, ignored 0`: each left-out class with up to five names.
pub fn pod_summary(c: PodCounts, names: Option<&PodGroupNames>) -> String {
    let listed = |n: usize, names: Option<&Vec<String>>| {
        let Some(names) = names.filter(|v| !v.is_empty()) else {
            return n.to_string();
        };
        let mut shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
        if names.len() > 5 {
            shown.push("…");
        }
        format!("{n} ({})", shown.join(", "))
    };
    format!(
        "ready {}, unready {}, missing {}, ignored {}",
        c.ready,
        listed(c.unready, names.map(|g| &g.unready)),
        listed(c.missing, names.map(|g| &g.missing)),
        listed(c.ignored, names.map(|g| &g.ignored)),
    )
}

/// Milli-units as a plain decimal: `12500` → `12.5`, `900` → `0.9`.
fn decimal(milli: i64) -> String {
    let text = format!("{}.{:03}", milli / 1000, (milli % 1000).unsigned_abs());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if milli < 0 && milli > -1000 {
        format!("-{text}")
    } else {
        text.to_owned()
    }
}

impl fmt::Display for MetricReading {
    /// `cpu 90%/50%→6`, `queue 120/10 per pod→12`, or `queue error`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.current, &self.error) {
            (_, Some(_)) => write!(f, "{} error", self.metric),
            (Some(c), None) => {
                write!(f, "{} {c}/{}", self.metric, self.target)?;
                if let Some(p) = self.proposal {
                    write!(f, "→{p}")?;
                }
                Ok(())
            }
            (None, None) => write!(f, "{} -/{}", self.metric, self.target),
        }
    }
}

// ---- KEDA ----

/// The metric keys a ScaledObject reads: each trigger's name and index; cpu/memory triggers take per-pod
/// values (also under `cpu` / `memory`).
fn keda_trigger_keys(so: &ScaledObjectSpec) -> Vec<(String, MetricShape)> {
    so.triggers
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let shape = if t.is_resource() {
                MetricShape::PerPod
            } else {
                MetricShape::Trigger
            };
            let mut keys = vec![(t.name.clone(), shape), (i.to_string(), shape)];
            if t.is_resource() {
                keys.push((t.kind.clone(), shape));
            }
            keys
        })
        .collect()
}

/// How the file spells `timeline[i].scaledObject` (`scaled_object` is accepted too), for locating it.
fn scaled_object_change_key(text: &str, entry: &[Seg]) -> &'static str {
    let path = [entry, &[key("scaled_object")]].concat();
    if locate_exact(text, &path).is_some() {
        "scaled_object"
    } else {
        "scaledObject"
    }
}

/// The policy manifest's `creationTimestamp`, `lastActiveTime` and `health` (KEDA's inputs).
/// `policy.cluster`, read into the webhook's view of the namespace.
fn read_cluster(policy: &PolicyConfig, p: &mut Problems<'_>) -> Option<ClusterView> {
    let text = policy.cluster.as_ref()?;
    if policy.scaled_object.is_none() {
        let message = "read only with a scaledObject (the objects KEDA's admission webhook reads)";
        p.push(&[key("policy"), key("cluster")], message);
        return None;
    }
    match ClusterView::from_manifests(text) {
        Ok(view) => Some(view),
        Err(e) => {
            p.manifest(&[key("policy"), key("cluster")], text, e);
            None
        }
    }
}

fn read_keda_status(policy: &PolicyConfig, p: &mut Problems<'_>) -> ScaledObjectStatusInput {
    let Some(text) = &policy.scaled_object else {
        return ScaledObjectStatusInput::default();
    };
    match manifest::parse_scaled_object_status(text) {
        Ok(status) => status,
        Err(e) => {
            p.manifest(&[key("policy"), key("scaledObject")], text, e);
            ScaledObjectStatusInput::default()
        }
    }
}

impl World<'_> {
    /// Each trigger's value at `now`: cpu/memory from per-pod usage, `kubernetes-workload` from the
    /// labelled pods unless a value is given, `cron` from the clock (by the engine), the others from the
    /// timeline.
    fn keda_triggers(
        &self,
        so: &ScaledObjectSpec,
        pods: &[PodInfo],
        now: i64,
    ) -> Vec<TriggerValue> {
        so.triggers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let given = [t.name.clone(), i.to_string(), t.kind.clone()]
                    .into_iter()
                    .find(|k| self.metrics.contains_key(k));
                if t.is_resource() {
                    return match given {
                        Some(k) => match self.per_pod(&k, pods, now) {
                            MetricSample::PerPod(m) => TriggerValue::PerPod(m),
                            MetricSample::Failed(e) => TriggerValue::Failed(e),
                            _ => TriggerValue::Failed(format!("{k}: per-pod values expected")),
                        },
                        None => TriggerValue::Failed(format!(
                            "no {} usage for trigger {:?} in the scenario yet",
                            t.kind, t.name
                        )),
                    };
                }
                if t.kind == "kubernetes-workload" && given.is_none() {
                    return self.workload_count(t);
                }
                if t.kind == "cron" {
                    // The engine reads a cron trigger from the clock; this entry is not read.
                    return TriggerValue::Value(0.0);
                }
                self.trigger(&t.name, i)
            })
            .collect()
    }

    /// The `kubernetes-workload` scaler's value: pods matching `podSelector` that are not Succeeded or
    /// Failed, or with `groupByNode` the number of their distinct nodes.
    fn workload_count(&self, t: &keda::TriggerSpec) -> TriggerValue {
        let selector = match t
            .metadata
            .get("podSelector")
            .map(|s| LabelSelector::parse(s))
        {
            Some(Ok(s)) => s,
            Some(Err(e)) => return TriggerValue::BuildFailed(e),
            None => return TriggerValue::BuildFailed("podSelector: missing".to_owned()),
        };
        let counted = self.labelled_pods.iter().filter(|g| {
            selector.matches(&g.labels)
                && !matches!(g.phase, Some(PodPhase::Succeeded | PodPhase::Failed))
        });
        let by_node = t
            .metadata
            .get("groupByNode")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let n = if by_node {
            counted
                .filter(|g| g.count > 0)
                .filter_map(|g| g.node.as_deref())
                .collect::<BTreeSet<_>>()
                .len() as f64
        } else {
            counted.map(|g| f64::from(g.count)).sum()
        };
        TriggerValue::Value(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        for (text, ms) in [
            ("0", 0),
            ("30s", 30_000),
            ("-2m", -120_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("+1h", 3_600_000),
        ] {
            assert_eq!(parse_offset(text), Ok(ms), "{text}");
        }
        for bad in ["", "-", "1x", "s", "1.5s"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
        assert_eq!(format_offset(90_500), "1m30s500ms");
        assert_eq!(format_offset(-60_000), "-1m");
    }

    #[test]
    fn timestamps() {
        let check = |text: &str, expect: Option<i64>| {
            assert_eq!(parse_timestamp(text).ok(), expect, "{text:?}");
        };
        let day = 86_400_000;
        // 2024-03-04 is day 19786 of the Unix epoch.
        let march_4 = 19_786 * day;
        check("1970-01-01T00:00:00Z", Some(0));
        check("2024-03-04T00:00:00Z", Some(march_4));
        check("2024-03-04T02:00:00.5+02:00", Some(march_4 + 500));
        check("1969-12-31T23:59:59.9999Z", Some(-1));
        check(" 2024-03-04t00:00:00z ", Some(march_4));
        check("2024-03-04 00:00:00-00:00", Some(march_4));
        check("2024-03-03T19:00:00-05:00", Some(march_4));
        // Leap years, through jiff's calendar.
        check("2024-03-01T00:00:00Z", Some(march_4 - 3 * day));
        check("2024-02-29T00:00:00Z", Some(march_4 - 4 * day));
        check("2000-03-01T00:00:00Z", Some(11_017 * day));
        check("1900-03-01T00:00:00Z", Some(-25_508 * day));
        // Accepted because the first, hand-written parser accepted them (see `WrittenTime`).
        check("2024-3-4T0:0:0Z", Some(march_4));
        check("02024-03-04T00:00:00Z", Some(march_4));
        check("2024-02-31T00:00:00Z", Some(march_4 - 2 * day));
        check("2024-03-03T23:59:60Z", Some(march_4));
        check("2024-03-04T00:00:00.0009999999999Z", Some(march_4));
        check("2024-03-04T00:00:00.123xyzZ", Some(march_4 + 123));
        check("2024-03-04T00:00:00.Z", Some(march_4));
        check("2024-03-04T00:00:00+00:60", Some(march_4 - 3_600_000));
        check("2024-03-04T00:00:00+99:00", Some(march_4 - 99 * 3_600_000));
        // Rejected, as before.
        for bad in [
            "yesterday",
            "",
            "2024-13-04T00:00:00Z",
            "2024-00-04T00:00:00Z",
            "2024-03-00T00:00:00Z",
            "2024-03-32T00:00:00Z",
            "2024-03-04T24:00:00Z",
            "2024-03-04T00:60:00Z",
            "2024-03-04T00:00:61Z",
            "2024-03-04",
            "2024-03-04T00:00:00",
            "2024-03-04T00:00Z",
            "20240304T000000Z",
            "2024-03-04T00:00:00+0200",
            "2024-03-04T00:00:00+02",
            "2024-03-04T00:00:00+02:00:30",
            "2024-03-04T00:00:00Z[UTC]",
            "2024-03-04T00:00:00+01:00[Europe/Paris]",
            "+002024-03-04T00:00:00Z",
            "-0001-03-04T00:00:00Z",
            "2024-03-04T00:00:00,5Z",
            "2024-03-04T00:00:00.5xZ",
            "2024-03-04T00:00:00\u{2212}05:00",
            // Panicked or overflowed in the hand-written parser; now plainly rejected.
            "2024-03-04T00:00:00.12\u{e9}Z",
            "2024-03-04T00:00:00+999999999999999999:00",
            "9223372036854775807-01-01T00:00:00Z",
            // Beyond jiff's years ±9999.
            "10000-01-01T00:00:00Z",
            "9999-12-31T23:59:59-00:01",
        ] {
            check(bad, None);
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("spec.metrics[0].resource"),
            vec![key("spec"), key("metrics"), Seg::Index(0), key("resource")]
        );
        assert_eq!(render_path(&parse_path("a[1][2].b")), "a[1][2].b");
    }

    #[test]
    fn locate_finds_nodes_and_falls_back_to_ancestors() {
        let text = "a:\n  b: [1, {c: 2}]\n  d: |\n    x: 1\n";
        let at = |path: &[Seg]| locate(text, path).map(|p| (p.line, p.column));
        assert_eq!(at(&[key("a"), key("b")]), Some((2, 6)));
        assert_eq!(
            at(&[key("a"), key("b"), Seg::Index(1), key("c")]),
            Some((2, 14))
        );
        assert_eq!(at(&[key("a"), key("zz")]), Some((2, 3)));
        let d = locate(text, &[key("a"), key("d")]).unwrap();
        assert_eq!((d.line, d.column), (3, 6));
        assert_eq!(block_origin(text, d), Some((4, 5)));
    }
}
