//! KEDA ScaledJob, ported from kedacore/keda at 8b4f083ca8c8c2baf8477e322bd4d16ac4dfa09a:
//! `pkg/scaling/executor/scale_jobs_test.go` and `pkg/scaling/scaledjob/metrics_test.go`. One block per
//! upstream test, its name in a comment. `TestCreateJobs` and `TestGenerateJobs` build the Job objects
//! from the manifest (`JobTemplate`): the mocked client's `Create` calls are the returned objects.

// Test helpers may unwrap (a panic is a failed test).
#![allow(clippy::unwrap_used)]

use surge_engine::hpa::PodPhase;
use surge_engine::keda::job::{
    self, JobInfo, JobOutcome, JobPod, JobScalingStrategy, JobTrigger, JobTriggerValue,
    MultipleScalersCalculation, ScaledJobSpec,
};
use surge_engine::keda::job_object;
use surge_engine::parse_scaled_job;

fn scaled_job(strategy: JobScalingStrategy) -> ScaledJobSpec {
    ScaledJobSpec {
        name: "test".to_owned(),
        paused: false,
        polling_interval_seconds: 30,
        min_replica_count: None,
        max_replica_count: None,
        strategy,
        multiple_scalers_calculation: MultipleScalersCalculation::Max,
        pending_pod_conditions: Vec::new(),
        successful_jobs_history_limit: 100,
        failed_jobs_history_limit: 100,
        triggers: vec![JobTrigger {
            name: "q".to_owned(),
            kind: "rabbitmq".to_owned(),
            target: 1.0,
            activation_threshold: 0.0,
        }],
    }
}

/// `NewScalingStrategy` as the manifest spells it (`getMockScaledJobWithStrategy`).
fn strategy(name: &str, deduction: Option<i32>, percentage: &str) -> JobScalingStrategy {
    JobScalingStrategy::from_manifest(Some(name), deduction, Some(percentage)).unwrap()
}

fn max_scale(s: JobScalingStrategy, args: (i64, i64, i64, i64, i64)) -> i64 {
    s.effective_max_scale(args.0, args.1, args.2, args.3, args.4)
        .0
}

#[test]
fn new_scaling_strategy() {
    // TestNewNewScalingStrategy
    assert!(matches!(
        strategy("custom", Some(10), "0"),
        JobScalingStrategy::Custom { .. }
    ));
    assert_eq!(
        strategy("accurate", Some(0), "0"),
        JobScalingStrategy::Accurate
    );
    assert_eq!(
        JobScalingStrategy::from_manifest(None, None, None),
        Some(JobScalingStrategy::Default)
    );
    assert_eq!(
        strategy("default", Some(0), "0"),
        JobScalingStrategy::Default
    );
}

#[test]
fn default_scaling_strategy() {
    // TestDefaultScalingStrategy
    let s = JobScalingStrategy::Default;
    assert_eq!(max_scale(s, (3, 2, 0, 5, 1)), 1);
    assert_eq!(max_scale(s, (2, 0, 0, 5, 1)), 2);
}

#[test]
fn custom_scaling_strategy() {
    // TestCustomScalingStrategy
    let s = strategy("custom", Some(1), "0.5");
    assert_eq!(max_scale(s, (3, 2, 0, 5, 1)), 1);
    assert_eq!(max_scale(s, (10, 0, 0, 10, 1)), 9);
    // getMockScaledJobWithCustomStrategyWithNilParameter: no percentage → the default strategy.
    let s = JobScalingStrategy::from_manifest(Some("custom"), None, None).unwrap();
    assert_eq!(max_scale(s, (3, 2, 0, 5, 1)), 1);
    assert_eq!(max_scale(s, (2, 0, 0, 5, 1)), 2);
    // Empty string → default.
    assert_eq!(strategy("custom", Some(1), ""), JobScalingStrategy::Default);
    // 0 as the percentage.
    assert_eq!(
        max_scale(strategy("custom", Some(2), "0"), (3, 2, 0, 5, 1)),
        1
    );
    // Exceeding maxReplicaCount.
    assert_eq!(
        max_scale(strategy("custom", Some(-2), "0"), (3, 2, 0, 4, 1)),
        4
    );
}

#[test]
fn custom_scaling_strategy_nil_queue_length_deduction() {
    // TestCustomScalingStrategyNilQueueLengthDeduction
    let s = JobScalingStrategy::Custom {
        queue_length_deduction: None,
        running_job_percentage: 0.5,
    };
    assert_eq!(max_scale(s, (10, 2, 0, 100, 1)), 9);
    assert_eq!(max_scale(s, (10, 0, 0, 100, 1)), 10);
    let from_manifest =
        JobScalingStrategy::from_manifest(Some("custom"), None, Some("0.5")).unwrap();
    assert!(matches!(from_manifest, JobScalingStrategy::Custom { .. }));
    assert_eq!(max_scale(from_manifest, (10, 2, 0, 100, 1)), 9);
}

#[test]
fn accurate_scaling_strategy() {
    // TestAccurateScalingStrategy
    let s = strategy("accurate", Some(0), "0");
    for (args, want) in [
        ((3, 2, 0, 5, 1), 3),
        ((5, 2, 0, 5, 1), 3),
        // 2 pending jobs
        ((3, 4, 2, 10, 1), 1),
        ((5, 4, 2, 5, 1), 1),
        // 3 running jobs are pending
        ((3, 3, 3, 5, 1), 0),
        // running jobs pending, larger numbers
        ((15, 15, 15, 20, 1), 0),
        ((10, 10, 10, 15, 1), 0),
        // partial pending
        ((20, 15, 10, 20, 1), 5),
    ] {
        assert_eq!(max_scale(s, args), want, "{args:?}");
    }
}

#[test]
fn eager_scaling_strategy() {
    // TestEagerScalingStrategy
    let s = strategy("eager", Some(0), "0");
    for (args, want) in [
        ((4, 3, 0, 10, 1), (4, 10)),
        ((4, 0, 3, 10, 1), (4, 10)),
        ((4, 7, 0, 10, 1), (3, 10)),
        ((4, 1, 6, 10, 1), (3, 10)),
        ((15, 0, 0, 10, 1), (10, 10)),
    ] {
        assert_eq!(
            s.effective_max_scale(args.0, args.1, args.2, args.3, args.4),
            want,
            "{args:?}"
        );
    }
}

fn with_min(min: i32) -> ScaledJobSpec {
    // getMockScaledJobWithMinReplicaCountAndDefaultStrategy: max 100.
    ScaledJobSpec {
        min_replica_count: Some(min),
        max_replica_count: Some(100),
        ..scaled_job(JobScalingStrategy::Default)
    }
}

#[test]
fn running_job_count_and_min_replica_count() {
    // TestRunningJobCountSmallerMinReplicaCount
    assert_eq!(job::scaling_decision(&with_min(2), 0, 0, 0, 0), (2, 2));
    // TestRunningJobCountIsDeductedFromMinReplicaCount
    assert_eq!(job::scaling_decision(&with_min(2), 1, 0, 0, 0), (1, 1));
    // TestRunningJobCountGreaterOrEqualMinReplicaCountExecutesScalingStrategy
    assert_eq!(job::scaling_decision(&with_min(1), 1, 2, 2, 0), (2, 2));
}

fn finished(name: &str, completion: &str, outcome: JobOutcome) -> JobInfo {
    JobInfo {
        name: name.to_owned(),
        outcome: Some(outcome),
        completion_ms: Some(
            completion
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_millisecond(),
        ),
        pods: Vec::new(),
    }
}

fn deleted(successful: i32, failed: i32, jobs: &[JobInfo]) -> Vec<String> {
    let spec = ScaledJobSpec {
        successful_jobs_history_limit: successful,
        failed_jobs_history_limit: failed,
        ..scaled_job(JobScalingStrategy::Default)
    };
    let mut d = job::jobs_to_delete(&spec, jobs);
    d.sort();
    d
}

#[test]
fn clean_up() {
    use JobOutcome::{Complete, Failed};
    // TestCleanUpNormalCase
    let jobs = [
        finished("name1", "2020-07-29T15:37:00Z", Complete),
        finished("name2", "2020-07-29T15:36:00Z", Complete),
        finished("name3", "2020-07-29T15:38:00Z", Complete),
    ];
    assert_eq!(deleted(2, 2, &jobs), ["name2"]);
    // TestCleanUpMixedCaseWithSortByTime
    let jobs = [
        finished("success1", "2020-07-29T15:37:00Z", Complete),
        finished("success2", "2020-07-29T15:36:00Z", Complete),
        finished("success3", "2020-07-29T15:35:00Z", Complete),
        finished("fail1", "2020-07-29T15:37:00Z", Failed),
        finished("fail2", "2020-07-29T15:36:00Z", Failed),
        finished("fail3", "2020-07-29T15:38:00Z", Failed),
    ];
    assert_eq!(deleted(1, 2, &jobs), ["fail2", "success2", "success3"]);
    // TestCleanUpDefaultValue: limits default to 100 each.
    let mut jobs = vec![finished("success0", "2020-07-29T15:35:00Z", Complete)];
    jobs.extend(
        (1..101).map(|i| finished(&format!("success{i}"), "2020-07-29T15:40:00Z", Complete)),
    );
    jobs.push(finished("fail101", "2020-07-29T15:35:00Z", Failed));
    jobs.extend((102..202).map(|i| finished(&format!("fail{i}"), "2020-07-29T15:40:00Z", Failed)));
    let spec = parse_scaled_job(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledJob\nmetadata: {name: test}\nspec:\n  jobTargetRef: {template: {}}\n  triggers: [{type: rabbitmq, metadata: {queueLength: '1'}}]\n",
    )
    .unwrap();
    let mut d = job::jobs_to_delete(&spec, &jobs);
    d.sort();
    assert_eq!(d, ["fail101", "success0"]);
}

fn pod(phase: PodPhase, conditions: &[&str]) -> JobPod {
    JobPod {
        phase,
        true_conditions: conditions.iter().map(|c| (*c).to_owned()).collect(),
    }
}

#[test]
fn pending_job_count() {
    // TestGetPendingJobCount: one unfinished Job per row with these pods.
    let conds = ["Ready", "PodScheduled"];
    let unset = PodPhase::Unknown; // upstream leaves the phase empty in the condition rows
    let rows: Vec<(&[&str], Vec<JobPod>, i64)> = vec![
        (&[], vec![pod(PodPhase::Succeeded, &[])], 0),
        (&[], vec![pod(PodPhase::Running, &[])], 0),
        (&[], vec![pod(PodPhase::Failed, &[])], 1),
        (&[], vec![pod(PodPhase::Pending, &[])], 1),
        (&[], vec![pod(PodPhase::Unknown, &[])], 1),
        (&conds, vec![pod(unset, &[])], 1),
        (&conds, vec![pod(unset, &["Ready"])], 1),
        (&conds, vec![pod(unset, &["PodScheduled"])], 1),
        (&conds, vec![pod(unset, &["Ready", "PodScheduled"])], 0),
        // two pods, both with all conditions
        (
            &conds,
            vec![
                pod(unset, &["Ready", "PodScheduled"]),
                pod(unset, &["Ready", "PodScheduled"]),
            ],
            0,
        ),
        // two pods, one with all conditions
        (
            &conds,
            vec![
                pod(unset, &["Ready", "PodScheduled"]),
                pod(unset, &["Ready"]),
            ],
            0,
        ),
        // two pods, neither with all
        (
            &conds,
            vec![pod(unset, &["Ready"]), pod(unset, &["PodScheduled"])],
            1,
        ),
        // three pods, one with all
        (
            &conds,
            vec![
                pod(unset, &[]),
                pod(unset, &["Ready"]),
                pod(unset, &["Ready", "PodScheduled"]),
            ],
            0,
        ),
        // three pods, none with all
        (
            &conds,
            vec![
                pod(unset, &[]),
                pod(unset, &["Ready"]),
                pod(unset, &["PodScheduled"]),
            ],
            1,
        ),
        // empty condition list, running pod
        (&[], vec![pod(PodPhase::Running, &["Ready"])], 0),
    ];
    for (i, (conditions, pods, want)) in rows.into_iter().enumerate() {
        let jobs = [JobInfo {
            name: "j".to_owned(),
            outcome: None,
            completion_ms: None,
            pods,
        }];
        let conditions: Vec<String> = conditions.iter().map(|c| (*c).to_owned()).collect();
        assert_eq!(job::pending_job_count(&jobs, &conditions), want, "case {i}");
    }
    // TestAreAllPendingPodConditionsFulfilledBugScenario (issue #6727)
    let jobs = [JobInfo {
        name: "j".to_owned(),
        outcome: None,
        completion_ms: None,
        pods: vec![pod(unset, &conds), pod(unset, &conds)],
    }];
    let conditions: Vec<String> = conds.iter().map(|c| (*c).to_owned()).collect();
    assert_eq!(job::pending_job_count(&jobs, &conditions), 0);
}

#[test]
fn target_average_value() {
    // TestTargetAverageValue (pkg/scaling/scaledjob/metrics_test.go)
    assert_eq!(job::target_average_value(&[]), 0.0);
    assert_eq!(job::target_average_value(&[1.0, 1.0]), 1.0);
    assert_eq!(
        job::target_average_value(&[5.0, 5.0, 3.0]),
        4.333333333333333
    );
    assert_eq!(
        job::target_average_value(&[5.0, 5.0, 4.0]),
        4.666666666666667
    );
}

#[test]
fn a_poll_creates_jobs_for_the_queue() {
    // Not an upstream table: RequestJobScale end to end. Queue 7 at target 2 per job → 4 jobs; one running
    // and one pending with the accurate strategy → maxScale 4 - 1 pending = 3.
    let spec = ScaledJobSpec {
        triggers: vec![JobTrigger {
            name: "q".to_owned(),
            kind: "rabbitmq".to_owned(),
            target: 2.0,
            activation_threshold: 0.0,
        }],
        ..scaled_job(JobScalingStrategy::Accurate)
    };
    let running = JobInfo {
        name: "a".to_owned(),
        outcome: None,
        completion_ms: None,
        pods: vec![pod(PodPhase::Running, &[])],
    };
    let pending = JobInfo {
        name: "b".to_owned(),
        outcome: None,
        completion_ms: None,
        pods: vec![pod(PodPhase::Pending, &[])],
    };
    let d = job::evaluate_scaled_job(
        &spec,
        &[JobTriggerValue::Value(7.0)],
        &[running, pending],
        0,
    );
    assert_eq!((d.scale_to, d.max_scale), (7, 4));
    assert_eq!((d.running_jobs, d.pending_jobs), (2, 1));
    assert_eq!(d.jobs_to_create, 3);
    assert!(d.active);
    // A failed read with nothing active: Ready False TriggerError, no jobs.
    let d = job::evaluate_scaled_job(&spec, &[JobTriggerValue::Failed("down".to_owned())], &[], 0);
    assert_eq!(d.jobs_to_create, 0);
    assert_eq!(d.conditions[0].reason, "TriggerError");
}

#[test]
fn min_and_max_replica_count() {
    // TestScaledJob (apis/keda/v1alpha1/scaledjob_types_test.go)
    for (name, max, min, want_max, want_min) in [
        (
            "MaxReplicaCount is set to 10 and MinReplicaCount is set to 0",
            Some(10),
            Some(0),
            10,
            0,
        ),
        (
            "MaxReplicaCount is set to 10 and MinReplicaCount is nil",
            Some(10),
            None,
            10,
            0,
        ),
        (
            "MaxReplicaCount is set to 10 and MinReplicaCount is set to 1",
            Some(10),
            Some(1),
            9,
            1,
        ),
        (
            "MaxReplicaCount is nil and MinReplicaCount is set to 1",
            None,
            Some(1),
            100,
            1,
        ),
        (
            "MaxReplicaCount is nil and MinReplicaCount nil",
            None,
            None,
            100,
            0,
        ),
        (
            "MaxReplicaCount is set to 1 and MinReplicaCount is set to 10",
            Some(1),
            Some(10),
            1,
            1,
        ),
    ] {
        let spec = ScaledJobSpec {
            max_replica_count: max,
            min_replica_count: min,
            ..scaled_job(JobScalingStrategy::Default)
        };
        assert_eq!(
            (spec.max_replicas(), spec.min_replicas()),
            (want_max, want_min),
            "{name}"
        );
    }
}

/// `getMockScaledJobWithDefaultStrategyAndMeta(name)`: namespace `test`, label and annotation
/// `test: test`, an empty `jobTargetRef`.
const META_JOB: &str = "apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata:
  name: test
  namespace: test
  labels: {test: test}
  annotations: {test: test}
spec:
  jobTargetRef: {}
  triggers:
  - type: rabbitmq
    metadata: {queueLength: '1'}
";

#[test]
fn create_jobs() {
    // TestCreateJobs: createJobs(scaleTo 2, maxScale 2) creates 2 Jobs, each `generateName: test-` in
    // namespace `test`.
    let t = job_object::JobTemplate::from_manifest(META_JOB).unwrap();
    let jobs = t.create_jobs(2, 2, "main");
    assert_eq!(jobs.len(), 2);
    for j in &jobs {
        assert_eq!(j["metadata"]["generateName"], "test-");
        assert_eq!(j["metadata"]["namespace"], "test");
    }
    // Not upstream: scaleTo is capped at maxScale, and nothing is created when maxScale <= 0.
    assert_eq!(t.create_jobs(5, 3, "main").len(), 3);
    assert!(t.create_jobs(2, 0, "main").is_empty());
}

#[test]
fn generate_jobs() {
    // TestGenerateJobs
    let t = job_object::JobTemplate::from_manifest(META_JOB).unwrap();
    let jobs = t.generate_jobs(2, "main");
    assert_eq!(jobs.len(), 2);
    let annotations = serde_json::json!({"test": "test", "scaledjob.keda.sh/generation": "0"});
    let labels = serde_json::json!({
        "app.kubernetes.io/managed-by": "keda-operator",
        "app.kubernetes.io/name": "test",
        "app.kubernetes.io/part-of": "test",
        "app.kubernetes.io/version": "main",
        "scaledjob.keda.sh/name": "test",
        "test": "test",
    });
    for j in &jobs {
        assert_eq!(j["metadata"]["annotations"], annotations);
        assert_eq!(j["metadata"]["labels"], labels);
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "OnFailure");
    }
    // Not upstream: the excluded-labels annotation, a restartPolicy kept, the owner reference and the
    // pod template's name and label.
    let manifest = META_JOB
        .replace("labels: {test: test}", "labels: {test: test, team: a}")
        .replace(
            "annotations: {test: test}",
            "annotations: {scaledjob.keda.sh/job-excluded-labels: 'test'}",
        )
        .replace(
            "jobTargetRef: {}",
            "jobTargetRef: {template: {spec: {restartPolicy: Never, containers: [{name: w, image: w}]}}}",
        );
    let t = job_object::JobTemplate::from_manifest(&manifest).unwrap();
    let j = &t.generate_jobs(1, "2.18.0")[0];
    assert_eq!(j["metadata"]["labels"]["team"], "a");
    assert!(j["metadata"]["labels"].get("test").is_none());
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(j["spec"]["template"]["metadata"]["generateName"], "test-");
    assert_eq!(
        j["spec"]["template"]["metadata"]["labels"]["scaledjob.keda.sh/name"],
        "test"
    );
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "ScaledJob");
    assert_eq!(j["metadata"]["ownerReferences"][0]["controller"], true);
    // A template that is not an object is refused, not indexed.
    let bad = META_JOB.replace("jobTargetRef: {}", "jobTargetRef: {template: 3}");
    assert!(job_object::JobTemplate::from_manifest(&bad).is_err());
}
