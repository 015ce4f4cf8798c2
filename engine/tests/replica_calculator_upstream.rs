//! Cases ported from kubernetes `pkg/controller/podautoscaler/replica_calculator_test.go`, one row per
//! upstream test (its name in the comment). The harness mirrors upstream's: pods `test-pod-N` with two
//! containers each requesting the pod's request, CPU samples at the zero time with a 1 min window,
//! `Ready` transitions at the zero time, start times "hot" (1 min ago) or "cool" (3 min ago, or the zero
//! time when unset), CPU initialization period 2 min, initial readiness delay 10 s, tolerance 0.1.

// Test helpers may unwrap (a panic is a failed test) and tables are wide tuples by design.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::collections::BTreeMap;

use surge_engine::hpa::calc::{self, PodSample, PodSamples};
use surge_engine::hpa::{
    ConditionStatus, ContainerRequests, ControllerConfig, PodInfo, PodPhase, Tolerances,
};

const NOW: i64 = 1_700_000_000_000;
const ZERO: i64 = 0;
const HOT: i64 = NOW - 60_000;
const COOL: i64 = NOW - 3 * 60_000;
const T: ConditionStatus = ConditionStatus::True;
const F: ConditionStatus = ConditionStatus::False;
const R: PodPhase = PodPhase::Running;
const P: PodPhase = PodPhase::Pending;
const X: PodPhase = PodPhase::Failed;

fn config() -> ControllerConfig {
    ControllerConfig {
        tolerance: 0.1,
        cpu_initialization_period_ms: 2 * 60_000,
        delay_of_initial_readiness_status_ms: 10_000,
        ..ControllerConfig::default()
    }
}

fn tol() -> Tolerances {
    Tolerances {
        scale_down: 0.1,
        scale_up: 0.1,
    }
}

/// Pod description for one row.
#[derive(Default, Clone)]
struct Pods {
    count: usize,
    /// Per-container CPU request (milli); both containers request it.
    requests: Vec<i64>,
    readiness: Vec<ConditionStatus>,
    start: Vec<i64>,
    phase: Vec<PodPhase>,
    deleting: Vec<bool>,
}

fn pods(p: &Pods) -> Vec<PodInfo> {
    let n = p.count.max(p.phase.len());
    (0..n)
        .map(|i| {
            let request = p.requests.get(i).copied();
            let container = |name: &str| ContainerRequests {
                name: name.to_owned(),
                requests: request
                    .map(|r| BTreeMap::from([("cpu".to_owned(), r)]))
                    .unwrap_or_default(),
            };
            PodInfo {
                name: format!("test-pod-{i}"),
                phase: p.phase.get(i).copied().unwrap_or(R),
                ready: Some(p.readiness.get(i).copied().unwrap_or(T)),
                ready_transition_ms: ZERO,
                start_ms: Some(p.start.get(i).copied().unwrap_or(ZERO)),
                deleting: p.deleting.get(i).copied().unwrap_or(false),
                containers: vec![container("container1"), container("container2")],
            }
        })
        .collect()
}

fn samples(values: &[i64]) -> PodSamples {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                format!("test-pod-{i}"),
                PodSample {
                    value: *v,
                    timestamp_ms: ZERO,
                    window_ms: 60_000,
                },
            )
        })
        .collect()
}

/// Both containers report `level`: the pod sample is twice it.
fn pod_levels(levels: &[i64]) -> PodSamples {
    samples(&levels.iter().map(|l| l * 2).collect::<Vec<_>>())
}

fn resource(
    current: i32,
    p: &Pods,
    metrics: PodSamples,
    target: i32,
    container: Option<&str>,
) -> Result<(i32, i32, i64), String> {
    calc::get_resource_replicas(
        current,
        target,
        "cpu",
        container,
        tol(),
        &pods(p),
        metrics,
        &config(),
        NOW,
    )
    .map(|r| (r.replicas, r.utilization.unwrap_or(-1), r.usage))
}

fn plain(current: i32, p: &Pods, values: &[i64], target: i64) -> (i32, i64) {
    let r = calc::calc_plain_metric_replicas(
        samples(values),
        current,
        target,
        tol(),
        &pods(p),
        None,
        &config(),
        NOW,
    )
    .unwrap();
    (r.replicas, r.usage)
}

fn three(requests: i64) -> Vec<i64> {
    vec![requests; 3]
}

#[test]
fn resource_utilization_rows() {
    let p3 = Pods {
        count: 3,
        requests: three(1000),
        ..Pods::default()
    };
    let p5 = Pods {
        count: 5,
        requests: vec![1000; 5],
        ..Pods::default()
    };
    // (upstream name, current, pods, metrics, target, container, expected replicas, utilization, raw value)
    let rows: Vec<(
        &str,
        i32,
        Pods,
        PodSamples,
        i32,
        Option<&str>,
        i32,
        i32,
        i64,
    )> = vec![
        // TestReplicaCalcScaleUp
        (
            "ScaleUp",
            3,
            p3.clone(),
            pod_levels(&[300, 500, 700]),
            30,
            None,
            5,
            50,
            1000,
        ),
        // TestReplicaCalcContainerScaleUp
        (
            "ContainerScaleUp",
            3,
            p3.clone(),
            samples(&[300, 500, 700]),
            30,
            Some("container2"),
            5,
            50,
            500,
        ),
        // TestReplicaCalcScaleUpUnreadyLessScale
        (
            "ScaleUpUnreadyLessScale",
            3,
            Pods {
                readiness: vec![F, T, T],
                ..p3.clone()
            },
            pod_levels(&[300, 500, 700]),
            30,
            None,
            4,
            60,
            1200,
        ),
        // TestReplicaCalcScaleUpHotCpuLessScale
        (
            "ScaleUpHotCpuLessScale",
            3,
            Pods {
                start: vec![HOT, COOL, COOL],
                ..p3.clone()
            },
            pod_levels(&[300, 500, 700]),
            30,
            None,
            4,
            60,
            1200,
        ),
        // TestReplicaCalcScaleUpContainerHotCpuLessScale
        (
            "ScaleUpContainerHotCpuLessScale",
            3,
            Pods {
                start: vec![HOT, COOL, COOL],
                ..p3.clone()
            },
            samples(&[300, 500, 700]),
            30,
            Some("container2"),
            4,
            60,
            600,
        ),
        // TestReplicaCalcScaleUpUnreadyNoScale
        (
            "ScaleUpUnreadyNoScale",
            3,
            Pods {
                readiness: vec![T, F, F],
                ..p3.clone()
            },
            pod_levels(&[400, 500, 700]),
            30,
            None,
            3,
            40,
            800,
        ),
        // TestReplicaCalcScaleHotCpuNoScale
        (
            "ScaleHotCpuNoScale",
            3,
            Pods {
                readiness: vec![T, F, F],
                start: vec![COOL, HOT, HOT],
                ..p3.clone()
            },
            pod_levels(&[400, 500, 700]),
            30,
            None,
            3,
            40,
            800,
        ),
        // TestReplicaCalcScaleUpIgnoresFailedPods
        (
            "ScaleUpIgnoresFailedPods",
            2,
            Pods {
                count: 4,
                requests: vec![1000; 4],
                readiness: vec![T, T, F, F],
                phase: vec![R, R, X, X],
                ..Pods::default()
            },
            pod_levels(&[500, 700]),
            30,
            None,
            4,
            60,
            1200,
        ),
        // TestReplicaCalcScaleUpIgnoresDeletionPods
        (
            "ScaleUpIgnoresDeletionPods",
            2,
            Pods {
                count: 4,
                requests: vec![1000; 4],
                readiness: vec![T, T, F, F],
                deleting: vec![false, false, true, true],
                ..Pods::default()
            },
            pod_levels(&[500, 700]),
            30,
            None,
            4,
            60,
            1200,
        ),
        // TestReplicaCalcScaleDown
        (
            "ScaleDown",
            5,
            p5.clone(),
            pod_levels(&[100, 300, 500, 250, 250]),
            50,
            None,
            3,
            28,
            560,
        ),
        // TestReplicaCalcContainerScaleDown
        (
            "ContainerScaleDown",
            5,
            p5.clone(),
            samples(&[100, 300, 500, 250, 250]),
            50,
            Some("container2"),
            3,
            28,
            280,
        ),
        // TestReplicaCalcScaleDownExcludeUnreadyPods
        (
            "ScaleDownExcludeUnreadyPods",
            5,
            Pods {
                readiness: vec![T, T, T, F, F],
                ..p5.clone()
            },
            pod_levels(&[100, 300, 500, 250, 250]),
            50,
            None,
            2,
            30,
            600,
        ),
        // TestReplicaCalcScaleDownExcludeUnscheduledPods
        (
            "ScaleDownExcludeUnscheduledPods",
            5,
            Pods {
                readiness: vec![T, F, F, F, F],
                phase: vec![R, P, P, P, P],
                ..p5.clone()
            },
            pod_levels(&[100]),
            50,
            None,
            1,
            10,
            200,
        ),
        // TestReplicaCalcScaleDownIgnoreHotCpuPods
        (
            "ScaleDownIgnoreHotCpuPods",
            5,
            Pods {
                start: vec![COOL, COOL, COOL, HOT, HOT],
                ..p5.clone()
            },
            pod_levels(&[100, 300, 500, 250, 250]),
            50,
            None,
            2,
            30,
            600,
        ),
        // TestReplicaCalcScaleDownIgnoresFailedPods
        (
            "ScaleDownIgnoresFailedPods",
            5,
            Pods {
                count: 7,
                requests: vec![1000; 7],
                readiness: vec![T, T, T, T, T, F, F],
                phase: vec![R, R, R, R, R, X, X],
                ..Pods::default()
            },
            pod_levels(&[100, 300, 500, 250, 250]),
            50,
            None,
            3,
            28,
            560,
        ),
        // TestReplicaCalcScaleDownIgnoresDeletionPods
        (
            "ScaleDownIgnoresDeletionPods",
            5,
            Pods {
                count: 7,
                requests: vec![1000; 7],
                readiness: vec![T, T, T, T, T, F, F],
                deleting: vec![false, false, false, false, false, true, true],
                ..Pods::default()
            },
            pod_levels(&[100, 300, 500, 250, 250]),
            50,
            None,
            3,
            28,
            560,
        ),
        // TestReplicaCalcTolerance
        (
            "Tolerance",
            3,
            Pods {
                count: 3,
                requests: vec![900, 1000, 1100],
                ..Pods::default()
            },
            pod_levels(&[1010, 1030, 1020]),
            100,
            None,
            3,
            102,
            2040,
        ),
        // TestReplicaCalcSuperfluousMetrics
        (
            "SuperfluousMetrics",
            4,
            Pods {
                count: 4,
                requests: vec![1000; 4],
                ..Pods::default()
            },
            pod_levels(&[4000, 9500, 3000, 7000, 3200, 2000]),
            100,
            None,
            24,
            587,
            11750,
        ),
        // TestReplicaCalcMissingMetrics
        (
            "MissingMetrics",
            4,
            Pods {
                count: 4,
                requests: vec![1000; 4],
                ..Pods::default()
            },
            pod_levels(&[400, 95]),
            100,
            None,
            3,
            24,
            495,
        ),
    ];
    for (name, current, p, metrics, target, container, replicas, utilization, raw) in rows {
        assert_eq!(
            resource(current, &p, metrics, target, container),
            Ok((replicas, utilization, raw)),
            "TestReplicaCalc{name}"
        );
    }
}

#[test]
fn resource_errors() {
    // TestReplicaCalcDisjointResourcesMetrics
    let p = Pods {
        count: 1,
        requests: vec![1000],
        ..Pods::default()
    };
    let mut m = PodSamples::new();
    m.insert(
        "an-older-pod-name".to_owned(),
        PodSample {
            value: 200,
            timestamp_ms: ZERO,
            window_ms: 60_000,
        },
    );
    assert_eq!(
        resource(1, &p, m, 100, None),
        Err("no metrics returned matched known pods".to_owned())
    );
}

#[test]
fn pods_metric_rows() {
    let p3 = Pods {
        count: 3,
        ..Pods::default()
    };
    // TestReplicaCalcScaleUpCM
    assert_eq!(plain(3, &p3, &[20000, 10000, 30000], 15000), (4, 20000));
    // TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale
    let hot = Pods {
        count: 3,
        readiness: vec![T, T, F],
        start: vec![COOL, COOL, HOT],
        ..Pods::default()
    };
    assert_eq!(plain(3, &hot, &[50000, 10000, 30000], 15000), (6, 30000));
    // TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown
    let hot2 = Pods {
        count: 3,
        readiness: vec![F, T, F],
        start: vec![HOT, COOL, HOT],
        ..Pods::default()
    };
    assert_eq!(plain(3, &hot2, &[50000, 15000, 30000], 15000), (7, 31666));
    // TestReplicaCalcScaleDownCM
    let p5 = Pods {
        count: 5,
        ..Pods::default()
    };
    assert_eq!(plain(5, &p5, &[12000; 5], 20000), (3, 12000));
    // TestReplicaCalcToleranceCM
    assert_eq!(plain(3, &p3, &[20000, 21000, 21000], 20000), (3, 20666));
}

fn object_value(current: i32, p: &Pods, usage: i64, target: i64) -> i32 {
    let ratio = usage as f64 / target as f64;
    calc::get_usage_ratio_replica_count(current, ratio, tol(), &pods(p))
        .unwrap()
        .0
}

fn per_pod(status: i32, total: i64, target: i64) -> (i32, i64) {
    let p = calc::per_pod_total_replicas(status, target, i128::from(total), tol());
    (p.replicas, p.usage)
}

#[test]
fn object_and_external_rows() {
    let n = |count| Pods {
        count,
        ..Pods::default()
    };
    let unready = Pods {
        count: 3,
        readiness: vec![F, T, F],
        ..Pods::default()
    };
    // TestReplicaCalcScaleUpCMObject
    assert_eq!(object_value(3, &n(3), 20000, 15000), 4);
    // TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods
    assert_eq!(object_value(3, &unready, 50000, 10000), 5);
    // TestReplicaCalcScaleDownCMObject
    assert_eq!(object_value(5, &n(5), 12000, 20000), 3);
    // TestReplicaCalcToleranceCMObject
    assert_eq!(object_value(3, &n(3), 20666, 20000), 3);
    // TestReplicaCalcScaleUpCMPerPodObject
    assert_eq!(per_pod(3, 20000, 5000), (4, 6667));
    // TestReplicaCalcScaleDownPerPodCMObject
    assert_eq!(per_pod(5, 6000, 2000), (3, 1200));
    // TestReplicaCalcTolerancePerPodCMObject
    assert_eq!(per_pod(4, 20166, 5000), (4, 5042));
    // TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods
    assert_eq!(object_value(3, &unready, 8600, 4400), 2);
    // TestReplicaCalcScaleDownCMExternal
    assert_eq!(object_value(5, &n(5), 8600, 14334), 3);
    // TestReplicaCalcToleranceCMExternal
    assert_eq!(object_value(3, &n(3), 8600, 8888), 3);
    // TestReplicaCalcScaleUpPerPodCMExternal
    assert_eq!(per_pod(3, 8600, 2150), (4, 2867));
    // TestReplicaCalcScaleDownPerPodCMExternal
    assert_eq!(per_pod(5, 8600, 2867), (3, 1720));
    // TestReplicaCalcTolerancePerPodCMExternal
    assert_eq!(per_pod(3, 8600, 2900), (3, 2867));
    // From zero replicas the ratio is used without tolerance (getUsageRatioReplicaCount).
    assert_eq!(object_value(0, &n(0), 1050, 1000), 2);
}
