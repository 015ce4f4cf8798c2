//! KEDA `ScaledJob` (keda.sh/v1alpha1): how many Jobs to create at a poll, as
//! `pkg/scaling/executor/scale_jobs.go` (`RequestJobScale`, the scaling strategies, running and pending
//! Jobs) and `pkg/scaling/scaledjob/metrics.go` (queue length, max value, `multipleScalersCalculation`)
//! compute it. Pure: the Jobs and their pods are inputs.

use serde::{Deserialize, Serialize};

use crate::decision::KedaCondition;
use crate::hpa::{ConditionStatus, PodPhase};

/// `defaultSuccessfulJobsHistoryLimit` and `defaultFailedJobsHistoryLimit`.
pub const DEFAULT_JOBS_HISTORY_LIMIT: i32 = 100;
/// `defaultScaledJobMaxReplicaCount`.
pub const DEFAULT_MAX_REPLICA_COUNT: i64 = 100;

/// A `ScaledJob` spec, defaulted and validated (see [`crate::manifest::parse_scaled_job`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaledJobSpec {
    /// `metadata.name`.
    pub name: String,
    /// `autoscaling.keda.sh/paused` (KEDA's `getBoolAnnotation` reading).
    pub paused: bool,
    /// `pollingInterval` seconds (30).
    pub polling_interval_seconds: i32,
    /// `minReplicaCount` as written.
    pub min_replica_count: Option<i32>,
    /// `maxReplicaCount` as written.
    pub max_replica_count: Option<i32>,
    /// `scalingStrategy.strategy` and its parameters.
    pub strategy: JobScalingStrategy,
    /// `scalingStrategy.multipleScalersCalculation`.
    pub multiple_scalers_calculation: MultipleScalersCalculation,
    /// `scalingStrategy.pendingPodConditions`.
    pub pending_pod_conditions: Vec<String>,
    /// `successfulJobsHistoryLimit` (100).
    pub successful_jobs_history_limit: i32,
    /// `failedJobsHistoryLimit` (100).
    pub failed_jobs_history_limit: i32,
    /// The triggers: name and target (`AverageValue` of its External metric).
    pub triggers: Vec<JobTrigger>,
}

/// One ScaledJob trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTrigger {
    /// `name` (or `s{index}-{type}`).
    pub name: String,
    /// `type`.
    pub kind: String,
    /// The target average value (the queue length one Job handles).
    pub target: f64,
    /// `activation...` threshold: active when the value is above it.
    pub activation_threshold: f64,
}

/// `scalingStrategy.strategy` (`NewScalingStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum JobScalingStrategy {
    /// `maxScale - runningJobCount`.
    Default,
    /// `maxScale - deduction - int(running · percentage)`, at most `maxReplicaCount`.
    Custom {
        /// `customScalingQueueLengthDeduction` (nil counts as 0).
        queue_length_deduction: Option<i32>,
        /// `customScalingRunningJobPercentage`, parsed.
        running_job_percentage: f64,
    },
    /// Counts pending Jobs.
    Accurate,
    /// Fills up to `maxReplicaCount` at once.
    Eager,
}

/// `scalingStrategy.multipleScalersCalculation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MultipleScalersCalculation {
    /// The active scaler with the largest queue (default).
    Max,
    /// The active scaler with the smallest queue.
    Min,
    /// The average over active scalers.
    Avg,
    /// The sum over active scalers.
    Sum,
}

/// One trigger's read at a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobTriggerValue {
    /// The metric's value (the sum of its series).
    Value(f64),
    /// The read failed.
    Failed(String),
}

/// A Job the ScaledJob created, as its controller sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// `metadata.name`.
    pub name: String,
    /// The `Complete` or `Failed` condition that is True, if any (the Job is finished).
    pub outcome: Option<JobOutcome>,
    /// `status.completionTime`, ms.
    pub completion_ms: Option<i64>,
    /// The Job's pods (`job-name=<job>`).
    pub pods: Vec<JobPod>,
}

/// How a Job finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// `Complete`.
    Complete,
    /// `Failed`.
    Failed,
}

/// One pod of a Job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPod {
    /// `status.phase`.
    pub phase: PodPhase,
    /// Condition types whose status is True (`Ready`, `PodScheduled`, ...).
    pub true_conditions: Vec<String>,
}

/// `ScalerMetrics`: one trigger's contribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerMetrics {
    /// The queue length (the metric's value).
    pub queue_length: f64,
    /// `min(queueLength / target, maxReplicaCount)`.
    pub max_value: f64,
    /// Whether the trigger is active.
    pub is_active: bool,
}

/// What one poll of a ScaledJob decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDecision {
    /// When, ms.
    pub now_ms: i64,
    /// Jobs created now.
    pub jobs_to_create: i64,
    /// `isActive`.
    pub active: bool,
    /// `isError`.
    pub error: bool,
    /// Running (unfinished) Jobs.
    pub running_jobs: i64,
    /// Pending Jobs.
    pub pending_jobs: i64,
    /// The `scaleTo` (queue length) and `maxScale` the scalers gave.
    pub scale_to: i64,
    /// `maxScale`.
    pub max_scale: i64,
    /// After the strategy: `effectiveMaxScale` (never negative).
    pub effective_max_scale: i64,
    /// The Ready and Active (and Paused) conditions.
    pub conditions: Vec<KedaCondition>,
    /// Finished Jobs deleted by the history limits.
    pub jobs_to_delete: Vec<String>,
    /// One line.
    pub reason: String,
}

impl ScaledJobSpec {
    /// `ScaledJob.MinReplicaCount()`.
    pub fn min_replicas(&self) -> i64 {
        match (self.min_replica_count, self.max_replica_count) {
            (Some(min), Some(max)) if min > max => i64::from(max),
            (Some(min), _) => i64::from(min),
            (None, _) => 0,
        }
    }

    /// `ScaledJob.MaxReplicaCount()`: the maximum *above* the minimum.
    pub fn max_replicas(&self) -> i64 {
        match (self.min_replica_count, self.max_replica_count) {
            (Some(min), Some(max)) if min > max => i64::from(max),
            (_, Some(max)) => i64::from(max) - self.min_replicas(),
            (_, None) => DEFAULT_MAX_REPLICA_COUNT,
        }
    }
}

impl JobScalingStrategy {
    /// `GetEffectiveMaxScale`: `(effectiveMaxScale, scaleTo)`.
    pub fn effective_max_scale(
        &self,
        max_scale: i64,
        running: i64,
        pending: i64,
        max_replica_count: i64,
        scale_to: i64,
    ) -> (i64, i64) {
        match *self {
            Self::Default => (max_scale - running, scale_to),
            Self::Custom {
                queue_length_deduction,
                running_job_percentage,
            } => {
                let deduction = i64::from(queue_length_deduction.unwrap_or(0));
                // Go's int64(float64) truncates toward zero.
                let result =
                    max_scale - deduction - (running as f64 * running_job_percentage) as i64;
                (result.min(max_replica_count), scale_to)
            }
            Self::Accurate => {
                if max_scale + running - pending > max_replica_count {
                    (max_replica_count - running, scale_to)
                } else {
                    (max_scale - pending, scale_to)
                }
            }
            Self::Eager => (
                (max_replica_count - running - pending).min(max_scale),
                max_replica_count,
            ),
        }
    }

    /// `NewScalingStrategy` from the manifest's strings: `custom` with a percentage that does not parse
    /// as a float selects the default strategy, as KEDA does.
    pub fn from_manifest(
        strategy: Option<&str>,
        deduction: Option<i32>,
        percentage: Option<&str>,
    ) -> Option<Self> {
        Some(match strategy {
            None | Some("" | "default") => Self::Default,
            Some("custom") => match percentage
                .map(str::trim)
                .and_then(|p| p.parse::<f64>().ok())
            {
                Some(p) => Self::Custom {
                    queue_length_deduction: deduction,
                    running_job_percentage: p,
                },
                None => Self::Default,
            },
            Some("accurate") => Self::Accurate,
            Some("eager") => Self::Eager,
            Some(_) => return None,
        })
    }
}

/// `getScalingDecision`: below the minimum, fill it; else the strategy, on the running count above the
/// minimum.
pub fn scaling_decision(
    spec: &ScaledJobSpec,
    running: i64,
    scale_to: i64,
    max_scale: i64,
    pending: i64,
) -> (i64, i64) {
    let min = spec.min_replicas();
    if running < min {
        let fill = min - running;
        return (fill, fill);
    }
    spec.strategy.effective_max_scale(
        max_scale,
        running - min,
        pending,
        spec.max_replicas(),
        scale_to,
    )
}

/// `getTargetAverageValue`: the mean of the triggers' targets.
pub fn target_average_value(targets: &[f64]) -> f64 {
    if targets.is_empty() {
        return 0.0;
    }
    targets.iter().sum::<f64>() / targets.len() as f64
}

/// `CalculateQueueLengthAndMaxValue` for one trigger: `(queueLength, maxValue)`.
pub fn queue_length_and_max_value(value: f64, target: f64, max_replica_count: i64) -> (f64, f64) {
    let max_value = if target != 0.0 {
        (value / target).min(max_replica_count as f64)
    } else {
        0.0
    };
    (value, max_value)
}

/// `IsScaledJobActive`: `(isActive, ceil(queueLength), ceil(maxValue), maxValue)`.
pub fn is_scaled_job_active(
    metrics: &[ScalerMetrics],
    calculation: MultipleScalersCalculation,
    min_replica_count: i64,
    max_replica_count: i64,
) -> (bool, i64, i64, f64) {
    let mut queue = 0.0;
    let mut max_value = 0.0;
    let mut active = false;
    match calculation {
        MultipleScalersCalculation::Min => {
            for m in metrics {
                if (queue == 0.0 || m.queue_length < queue) && m.is_active {
                    queue = m.queue_length;
                    max_value = m.max_value;
                    active = m.is_active;
                }
            }
        }
        MultipleScalersCalculation::Avg => {
            let active_ones: Vec<&ScalerMetrics> = metrics.iter().filter(|m| m.is_active).collect();
            if !active_ones.is_empty() {
                let n = active_ones.len() as f64;
                queue = active_ones.iter().map(|m| m.queue_length).sum::<f64>() / n;
                max_value = active_ones.iter().map(|m| m.max_value).sum::<f64>() / n;
                active = true;
            }
        }
        MultipleScalersCalculation::Sum => {
            for m in metrics.iter().filter(|m| m.is_active) {
                queue += m.queue_length;
                max_value += m.max_value;
                active = true;
            }
        }
        MultipleScalersCalculation::Max => {
            for m in metrics {
                if m.queue_length > queue && m.is_active {
                    queue = m.queue_length;
                    max_value = m.max_value;
                    active = m.is_active;
                }
            }
        }
    }
    if min_replica_count > 0 {
        active = true;
    }
    let max_value = max_value.min(max_replica_count as f64);
    (
        active,
        queue.ceil() as i64,
        max_value.ceil() as i64,
        max_value,
    )
}

/// Unfinished Jobs (`getRunningJobCount`).
pub fn running_job_count(jobs: &[JobInfo]) -> i64 {
    jobs.iter().filter(|j| j.outcome.is_none()).count() as i64
}

/// Unfinished Jobs not yet started (`getPendingJobCount`): with `pendingPodConditions`, no pod has all of
/// them True; without, no pod is Running or Succeeded.
pub fn pending_job_count(jobs: &[JobInfo], pending_pod_conditions: &[String]) -> i64 {
    jobs.iter()
        .filter(|j| j.outcome.is_none())
        .filter(|j| {
            if pending_pod_conditions.is_empty() {
                !j.pods
                    .iter()
                    .any(|p| matches!(p.phase, PodPhase::Succeeded | PodPhase::Running))
            } else {
                !j.pods.iter().any(|p| {
                    // KEDA counts the distinct required conditions found True and compares the count.
                    let fulfilled = pending_pod_conditions
                        .iter()
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .filter(|c| p.true_conditions.contains(c))
                        .count();
                    fulfilled == pending_pod_conditions.len()
                })
            }
        })
        .count() as i64
}

/// The finished Jobs `cleanUp` deletes: per outcome, the oldest by completion time beyond the history
/// limit.
pub fn jobs_to_delete(spec: &ScaledJobSpec, jobs: &[JobInfo]) -> Vec<String> {
    let mut out = Vec::new();
    for (outcome, limit) in [
        (JobOutcome::Complete, spec.successful_jobs_history_limit),
        (JobOutcome::Failed, spec.failed_jobs_history_limit),
    ] {
        let mut finished: Vec<&JobInfo> =
            jobs.iter().filter(|j| j.outcome == Some(outcome)).collect();
        finished.sort_by_key(|j| j.completion_ms.unwrap_or(i64::MIN));
        let limit = usize::try_from(limit.max(0)).unwrap_or(0);
        let excess = finished.len().saturating_sub(limit);
        out.extend(finished.into_iter().take(excess).map(|j| j.name.clone()));
    }
    out
}

/// One poll of a ScaledJob (`getScaledJobState` then `RequestJobScale`).
pub fn evaluate_scaled_job(
    spec: &ScaledJobSpec,
    values: &[JobTriggerValue],
    jobs: &[JobInfo],
    now_ms: i64,
) -> JobDecision {
    let running = running_job_count(jobs);
    let pending = pending_job_count(jobs, &spec.pending_pod_conditions);
    if spec.paused {
        return JobDecision {
            now_ms,
            jobs_to_create: 0,
            active: false,
            error: false,
            running_jobs: running,
            pending_jobs: pending,
            scale_to: 0,
            max_scale: 0,
            effective_max_scale: 0,
            conditions: vec![KedaCondition::new(
                "Paused",
                ConditionStatus::True,
                "ScaledJobPaused",
                "ScaledJob is paused",
            )],
            jobs_to_delete: Vec::new(),
            reason: "paused by autoscaling.keda.sh/paused".to_owned(),
        };
    }
    let mut error = false;
    let mut metrics = Vec::new();
    for (i, t) in spec.triggers.iter().enumerate() {
        match values.get(i) {
            Some(JobTriggerValue::Value(v)) if v.is_finite() => {
                let (queue_length, max_value) =
                    queue_length_and_max_value(*v, t.target, spec.max_replicas());
                metrics.push(ScalerMetrics {
                    queue_length,
                    max_value,
                    is_active: *v > t.activation_threshold,
                });
            }
            _ => error = true,
        }
    }
    let (active, scale_to, max_scale, _) = is_scaled_job_active(
        &metrics,
        spec.multiple_scalers_calculation,
        spec.min_replicas(),
        spec.max_replicas(),
    );
    let (effective, scale_to_after) = scaling_decision(spec, running, scale_to, max_scale, pending);
    let effective = effective.max(0);
    // createJobs: nothing when effectiveMaxScale <= 0, else min(scaleTo, effectiveMaxScale).
    let jobs_to_create = if active && effective > 0 {
        scale_to_after.min(effective)
    } else {
        0
    };
    let mut conditions = vec![KedaCondition::new(
        "Ready",
        ConditionStatus::True,
        "ScaledJobReady",
        "ScaledJob is defined correctly and is ready for scaling",
    )];
    if error {
        conditions[0] = if active {
            KedaCondition::new(
                "Ready",
                ConditionStatus::Unknown,
                "PartialTriggerError",
                "Some triggers defined in ScaledJob are not working correctly",
            )
        } else {
            KedaCondition::new(
                "Ready",
                ConditionStatus::False,
                "TriggerError",
                "Triggers defined in ScaledJob are not working correctly",
            )
        };
    }
    conditions.push(if active {
        KedaCondition::new(
            "Active",
            ConditionStatus::True,
            "ScalerActive",
            "Scaling is performed because triggers are active",
        )
    } else {
        KedaCondition::new(
            "Active",
            ConditionStatus::False,
            "ScalerNotActive",
            "Scaling is not performed because triggers are not active",
        )
    });
    JobDecision {
        now_ms,
        jobs_to_create,
        active,
        error,
        running_jobs: running,
        pending_jobs: pending,
        scale_to,
        max_scale,
        effective_max_scale: effective,
        conditions,
        jobs_to_delete: jobs_to_delete(spec, jobs),
        reason: format!(
            "create {jobs_to_create} job(s): queue {scale_to}, max {max_scale}, {running} running, {pending} pending, effective max {effective}"
        ),
    }
}
