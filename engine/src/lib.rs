//! surge's autoscaling engine: the Kubernetes HPA algorithm computed exactly, KEDA ScaledObject semantics,
//! and scheduled minimums, as pure functions.
//!
//! **Architecture invariant:** the engine does no I/O, reads no clock, spawns nothing and is not async.
//! Time is an input (`now_ms`, milliseconds since the Unix epoch); everything an evaluation needs
//! (replicas, pods, metric samples, past recommendations and scale events) is passed in, and the memory
//! between evaluations lives in state structs the caller owns ([`HpaState`], [`KedaState`]).
//!
//! Entry points:
//! - [`evaluate_hpa`]: one `reconcileAutoscaler` pass of kube-controller-manager for an `autoscaling/v2` HPA.
//! - [`evaluate_scaled_object`]: KEDA's 0↔1 executor plus the HPA it generates for 1↔N.
//! - [`evaluate_scaled_job`]: one poll of a KEDA ScaledJob (how many Jobs to create).
//! - [`parse_hpa`], [`parse_scaled_object`], [`parse_scaled_job`]: the manifests users write, validated.
//! - [`Schedule`]: cron windows that raise `minReplicas`.
//!
//! Every evaluation returns a [`Decision`] that explains itself (inputs, per-metric proposals, the
//! stabilization and limit steps, conditions, a one-line reason) and serializes to JSON.

pub mod cron;
pub mod decision;
pub mod formula;
pub mod hpa;
pub mod keda;
pub mod manifest;
pub mod quantity;
pub mod scenario;
pub mod schedule;

pub use decision::{
    Adjustment, Condition, Decision, DecisionInputs, HistoryUsed, KedaCondition, KedaDetail,
    MetricProposal, PodCounts, PodGroupNames,
};
pub use hpa::{
    Behavior, ConditionStatus, ContainerRequests, ControllerConfig, HpaInput, HpaSpec, HpaState,
    InitContainerRequests, MetricSample, MetricSource, MetricSpec, MetricTarget, PodInfo,
    PodMetric, PodPhase, PolicyKind, ScaleAccess, ScalingPolicy, ScalingRules, SelectPolicy,
    evaluate_hpa, evaluate_hpa_with_min, evaluate_hpa_with_scale,
};
pub use keda::cluster::ClusterView;
pub use keda::job::{ScaledJobSpec, evaluate_scaled_job};
pub use keda::{
    Annotations, FallbackBehavior, FallbackSpec, HealthStatus, HealthStatusType, KedaInput,
    KedaState, ScaledObjectSpec, ScalingModifiers, TriggerMetricType, TriggerSpec, TriggerValue,
    evaluate_scaled_object,
};
pub use manifest::{
    ManifestError, admit_scaled_object_update, parse_hpa, parse_scaled_job, parse_scaled_object,
    parse_scaled_object_in, parse_scaled_object_status,
};
pub use schedule::{Schedule, ScheduleError};
